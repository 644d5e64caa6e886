import { describe, expect, it } from 'vitest';
import { DecoderStructureError, GraphIndex, ModelProto, findDecoderStructure, floatTensor, makeNode } from '@libs/onnx-graph';
import { SMALL, buildGenaiDecoder, buildOptimumDecoder, configFor } from './decoder-fixtures';

const config = (configFor(SMALL) as { text_config: object }).text_config;

function names(model: ModelProto, cfg: object | undefined = config) {
  return findDecoderStructure(model, { config: cfg }).layers.map((l) => ({
    oProj: l.oProj.name,
    attention: l.attention.node.name,
    residual: l.mlp.node.name,
  }));
}

describe('findDecoderStructure: optimum / torch.onnx style', () => {
  it('finds o_proj and both residual Adds per layer', () => {
    const s = findDecoderStructure(buildOptimumDecoder(), { config });
    expect(s.residualStyle).toBe('add');
    expect([s.hidden, s.heads, s.headDim, s.batchDim, s.seqDim]).toEqual([32, 4, 8, 'batch_size', 'sequence_length']);
    expect(names(buildOptimumDecoder())).toEqual(
      [0, 1, 2].map((l) => ({
        oProj: `/model/layers.${l}/self_attn/o_proj/MatMul`,
        attention: `/model/layers.${l}/Add`,
        residual: `/model/layers.${l}/Add_1`,
      })),
    );
    expect(s.layers[1].oProjInput).toBe('/model/layers.1/self_attn/Reshape_3_output_0');
  });

  it('walks through an o_proj bias Add', () => {
    const s = findDecoderStructure(buildOptimumDecoder(SMALL, { oProjBias: true }), { config });
    expect(s.layers.map((l) => l.oProj.name)).toEqual([0, 1, 2].map((l) => `/model/layers.${l}/self_attn/o_proj/MatMul`));
  });

  it('needs no node names', () => {
    const plain = findDecoderStructure(buildOptimumDecoder(), { config });
    const scrambled = findDecoderStructure(buildOptimumDecoder(SMALL, { scrambleNames: true }), { config });
    expect(scrambled.layers.map((l) => [l.oProj.output[0], l.mlp.sumOutput])).toEqual(plain.layers.map((l) => [l.oProj.output[0], l.mlp.sumOutput]));
    expect(scrambled.layers[0].oProj.name).toMatch(/^n\d+$/);
  });

  it('works without config.json (heads from the query reshape)', () => {
    const s = findDecoderStructure(buildOptimumDecoder(), {});
    expect([s.layers.length, s.hidden, s.heads, s.headDim]).toEqual([3, 32, 4, 8]);
  });

  it('assigns layer weights to their layer and leaves shared nodes out', () => {
    const model = buildOptimumDecoder();
    const s = findDecoderStructure(model, { config });
    const index = new GraphIndex(model.graph);
    const layerOf = (init: string) => [...new Set(index.consumersOf(init).map((u) => s.nodeLayer.get(u.node)))];
    expect(layerOf('model.layers.1.self_attn.o_proj.weight')).toEqual([1]);
    expect(layerOf('model.layers.2.mlp.down_proj.weight')).toEqual([2]);
    expect(layerOf('model.layers.0.input_layernorm.weight')).toEqual([0]);
    expect(layerOf('model.layers.2.post_attention_layernorm.weight')).toEqual([2]);
    expect(layerOf('lm_head.weight')).toEqual([undefined]);
    const shapeNode = model.graph.node.find((n) => n.name === '/model/Where')!;
    expect(s.nodeLayer.has(shapeNode)).toBe(false);
  });
});

describe('findDecoderStructure: onnxruntime-genai style', () => {
  it('finds o_proj (MatMul and MatMulNBits) and the fused Skip norms', () => {
    const model = buildGenaiDecoder(SMALL, { nbitsOProj: [1] });
    const s = findDecoderStructure(model, { config });
    expect(s.residualStyle).toBe('skip-norm');
    expect(names(model)).toEqual([
      {
        oProj: '/model/layers.0/attn/o_proj/MatMul',
        attention: '/model/layers.0/post_attention_layernorm/SkipLayerNorm',
        residual: '/model/layers.1/input_layernorm/SkipLayerNorm',
      },
      {
        oProj: '/model/layers.1/attn/o_proj/MatMulNBits',
        attention: '/model/layers.1/post_attention_layernorm/SkipLayerNorm',
        residual: '/model/layers.2/input_layernorm/SkipLayerNorm',
      },
      {
        oProj: '/model/layers.2/attn/o_proj/MatMul',
        attention: '/model/layers.2/post_attention_layernorm/SkipLayerNorm',
        residual: '/model/layers.3/final_norm_layernorm/SkipLayerNorm',
      },
    ]);
    expect(s.layers.map((l) => l.attentionOp.op_type)).toEqual(['GroupQueryAttention', 'GroupQueryAttention', 'GroupQueryAttention']);
    // Residual operand alternates between input 0 and input 1 in the fixture: both must be understood.
    expect(s.layers.map((l) => l.mlp.branchIndex)).toEqual([1, 0, 1]);
    expect(s.layers[2].mlp.sumOutput).toBeUndefined();
  });

  it('gives a fused norm gamma to the layer that consumes its normalized output', () => {
    const model = buildGenaiDecoder();
    const s = findDecoderStructure(model, { config });
    const index = new GraphIndex(model.graph);
    const layerOf = (init: string) => index.consumersOf(init).map((u) => s.nodeLayer.get(u.node));
    expect(layerOf('model.layers.1.input_layernorm.weight')).toEqual([1]);
    expect(layerOf('model.layers.0.input_layernorm.weight')).toEqual([0]);
    expect(layerOf('model.norm.weight')).toEqual([undefined]);
  });

  it('reads heads from GroupQueryAttention without config.json', () => {
    const s = findDecoderStructure(buildGenaiDecoder(), {});
    expect([s.layers.length, s.heads, s.headDim]).toEqual([3, 4, 8]);
  });
});

describe('findDecoderStructure refuses broken decoders', () => {
  it('names the layer whose attention output does not come from o_proj (a non-linear node between them)', () => {
    const model = buildOptimumDecoder();
    const g = model.graph;
    const add = g.node.find((n) => n.name === '/model/layers.1/Add')!;
    g.node.splice(g.node.indexOf(add), 0, makeNode('Tanh', [add.input[1]], ['squashed_o'], '/model/layers.1/softcap/Tanh'));
    add.input[1] = 'squashed_o';
    expect(() => findDecoderStructure(model, { config })).toThrow(
      /^layer 1: the attention branch reaches residual merge '\/model\/layers.1\/Add' \(Add\) from '\/model\/layers.1\/softcap\/Tanh' \(Tanh\), which is neither o_proj/,
    );
  });

  it('walks through a constant scale between o_proj and the merge (linear: the head slice still enters o_proj)', () => {
    const model = buildOptimumDecoder();
    const g = model.graph;
    const add = g.node.find((n) => n.name === '/model/layers.1/Add')!;
    g.initializer.push({ ...g.initializer.find((t) => t.name === 'model.layers.1.input_layernorm.weight')!, name: 'residual_scale' });
    g.node.splice(g.node.indexOf(add), 0, makeNode('Mul', [add.input[1], 'residual_scale'], ['scaled_o'], '/model/layers.1/scale/Mul'));
    add.input[1] = 'scaled_o';
    const s = findDecoderStructure(model, { config });
    expect(s.layers[1].oProj.name).toBe('/model/layers.1/self_attn/o_proj/MatMul');
    expect(s.layers[1].postAttentionNorm).toBeUndefined();
  });

  it('names the layer whose MLP residual merge is missing', () => {
    const model = buildOptimumDecoder();
    model.graph.node.find((n) => n.name === '/model/layers.2/Add_1')!.op_type = 'Sub';
    expect(() => findDecoderStructure(model, {})).toThrow(DecoderStructureError);
    expect(() => findDecoderStructure(model, {})).toThrow(/layer 2: attention merge '\/model\/layers.2\/Add' \(Add\) is not followed by an MLP residual merge/);
  });

  it('checks the layer count against config.json', () => {
    expect(() => findDecoderStructure(buildOptimumDecoder(), { config: { ...config, num_hidden_layers: 4 } })).toThrow(
      /found 3 layers in the graph but config.json says num_hidden_layers=4/,
    );
  });

  it('checks heads * head_dim against o_proj', () => {
    expect(() => findDecoderStructure(buildOptimumDecoder(), { config: { ...config, head_dim: 16 } })).toThrow(
      /layer 0: o_proj .* takes 32 features, expected heads\*head_dim = 4\*16/,
    );
  });

  it('starts from an embedding Gather when the decoder takes input_ids', () => {
    const model = buildOptimumDecoder();
    model.graph.input[0] = {
      name: 'input_ids',
      type: { tensor_type: { elem_type: 7, shape: { dim: [{ dim_param: 'batch_size' }, { dim_param: 'sequence_length' }] } } },
    };
    model.graph.initializer.push(floatTensor('model.embed_tokens.weight', [SMALL.vocab, SMALL.hidden], new Float32Array(SMALL.vocab * SMALL.hidden)));
    model.graph.node.unshift(makeNode('Gather', ['model.embed_tokens.weight', 'input_ids'], ['inputs_embeds'], '/model/embed_tokens/Gather'));
    const s = findDecoderStructure(model, {});
    expect([s.embeddings, s.layers.length, s.hidden, s.batchDim, s.seqDim]).toEqual(['inputs_embeds', 3, 32, 'batch_size', 'sequence_length']);
  });

  it('explains layers hidden in If branches (use_cache_branch merges)', () => {
    const model = buildOptimumDecoder();
    const branch = { ...model.graph, name: 'with_past' };
    model.graph = { ...model.graph, node: [], initializer: [] };
    const ifNode = makeNode(
      'If',
      ['use_cache_branch'],
      model.graph.output.map((o) => o.name),
      'optimum::if',
    );
    ifNode.attribute.push({ name: 'then_branch', type: 5, g: branch } as never, { name: 'else_branch', type: 5, g: branch } as never);
    model.graph.node.push(ifNode);
    expect(() => findDecoderStructure(model, {})).toThrow(/inside an If\/Loop subgraph \(use_cache_branch merge\), which is not supported/);
  });

  it('refuses a graph with no residual stream start', () => {
    const model = buildOptimumDecoder();
    model.graph.input[0].name = 'hidden_states';
    expect(() => findDecoderStructure(model, {})).toThrow(/no 'inputs_embeds' input/);
  });
});
