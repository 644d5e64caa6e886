/**
 * Small decoders built in code with the node patterns of real exports, KV cache included:
 * - optimum / torch.onnx style: decomposed RMSNorm, MatMul/Softmax attention, plain residual Adds;
 * - onnxruntime-genai style: SimplifiedLayerNormalization, GroupQueryAttention, residual fused into
 *   SkipSimplifiedLayerNormalization (output 3 = sum), optionally MatMulNBits weights.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType, GraphBuilder, ModelProto, seededRandom, uint8Tensor, writeModel } from '@libs/onnx-graph';

export interface DecoderSpec {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  intermediate: number;
  seed: number;
}

export const SMALL: DecoderSpec = { layers: 3, hidden: 32, heads: 4, kvHeads: 2, vocab: 11, intermediate: 48, seed: 7 };

const F = DataType.FLOAT;

function weights(b: GraphBuilder, rnd: (s?: number) => number, name: string, rows: number, cols: number, scale = 0.3): string {
  return b.floats(
    name,
    [rows, cols],
    Array.from({ length: rows * cols }, () => rnd(scale)),
  );
}

function gamma(b: GraphBuilder, rnd: (s?: number) => number, name: string, n: number): string {
  return b.floats(
    name,
    [n],
    Array.from({ length: n }, () => 1 + rnd(0.1)),
  );
}

function kvIo(b: GraphBuilder, spec: DecoderSpec, l: number) {
  const hd = spec.hidden / spec.heads;
  for (const kind of ['key', 'value']) {
    b.input(`past_key_values.${l}.${kind}`, F, ['batch_size', spec.kvHeads, 'past_sequence_length', hd]);
    b.output(`present.${l}.${kind}`, F, ['batch_size', spec.kvHeads, 'total_sequence_length', hd]);
  }
}

/** Decomposed RMSNorm as torch.onnx exports it. */
function rmsNorm(b: GraphBuilder, x: string, w: string, name: string): string {
  const pow = b.op('Pow', [x, b.floats(b.constName(), [], [2])], `${name}/Pow`);
  const mean = b.op('ReduceMean', [pow], `${name}/ReduceMean`, { axes: [-1], keepdims: 1 });
  const add = b.op('Add', [mean, b.floats(b.constName(), [], [1e-6])], `${name}/Add`);
  const sqrt = b.op('Sqrt', [add], `${name}/Sqrt`);
  const inv = b.op('Div', [b.floats(b.constName(), [], [1]), sqrt], `${name}/Div`);
  const mul = b.op('Mul', [x, inv], `${name}/Mul`);
  return b.op('Mul', [w, mul], `${name}/Mul_1`);
}

function mlp(b: GraphBuilder, rnd: (s?: number) => number, spec: DecoderSpec, x: string, prefix: string, w: string): string {
  const gate = b.op('MatMul', [x, weights(b, rnd, `${w}.mlp.gate_proj.weight`, spec.hidden, spec.intermediate)], `${prefix}/gate_proj/MatMul`);
  const sig = b.op('Sigmoid', [gate], `${prefix}/act_fn/Sigmoid`);
  const act = b.op('Mul', [gate, sig], `${prefix}/act_fn/Mul`);
  const up = b.op('MatMul', [x, weights(b, rnd, `${w}.mlp.up_proj.weight`, spec.hidden, spec.intermediate)], `${prefix}/up_proj/MatMul`);
  const prod = b.op('Mul', [act, up], `${prefix}/Mul`);
  return b.op('MatMul', [prod, weights(b, rnd, `${w}.mlp.down_proj.weight`, spec.intermediate, spec.hidden)], `${prefix}/down_proj/MatMul`);
}

export interface OptimumOptions {
  /** o_proj followed by a bias Add (e.g. Qwen2-style exports). */
  oProjBias?: boolean;
  /** Replace every node name by an opaque one: the structure search must not need names. */
  scrambleNames?: boolean;
  /** Store these initializers in float_data instead of raw_data. */
  floatDataFor?: (name: string) => boolean;
}

export function buildOptimumDecoder(spec: DecoderSpec = SMALL, opts: OptimumOptions = {}): ModelProto {
  const b = new GraphBuilder();
  const rnd = seededRandom(spec.seed);
  const { hidden, heads, kvHeads } = spec;
  const hd = hidden / heads;
  b.input('inputs_embeds', F, ['batch_size', 'sequence_length', hidden]);
  b.input('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']);
  b.input('position_ids', DataType.INT64, ['batch_size', 'sequence_length']);
  b.output('logits', F, ['batch_size', 'sequence_length', spec.vocab]);
  for (let l = 0; l < spec.layers; l++) kvIo(b, spec, l);

  // Shared causal + padding bias [batch, 1, seq, total], built from shapes as torch.onnx does.
  const maskF = b.op('Cast', ['attention_mask'], '/model/Cast', { to: F });
  const padBias = b.op('Mul', [b.op('Sub', [maskF, b.floats(b.constName(), [], [1])], '/model/Sub'), b.floats(b.constName(), [], [1e4])], '/model/Mul');
  const padBias4 = b.op('Unsqueeze', [padBias, b.ints(b.constName(), [2], [1, 2])], '/model/Unsqueeze');
  const seq = b.op('Gather', [b.op('Shape', ['inputs_embeds'], '/model/Shape'), b.ints(b.constName(), [], [1])], '/model/Gather', { axis: 0 });
  const total = b.op('Gather', [b.op('Shape', ['attention_mask'], '/model/Shape_1'), b.ints(b.constName(), [], [1])], '/model/Gather_1', { axis: 0 });
  const past = b.op('Sub', [total, seq], '/model/Sub_1');
  const one = b.ints(b.constName(), [], [1]);
  const qPos = b.op('Unsqueeze', [b.op('Range', [past, total, one], '/model/Range'), b.ints(b.constName(), [1], [1])], '/model/Unsqueeze_1');
  const kPos = b.op('Range', [b.ints(b.constName(), [], [0]), total, one], '/model/Range_1');
  const allowed = b.op('LessOrEqual', [kPos, qPos], '/model/LessOrEqual');
  const causal = b.op('Where', [allowed, b.floats(b.constName(), [], [0]), b.floats(b.constName(), [], [-1e4])], '/model/Where');
  const bias = b.op('Add', [padBias4, causal], '/model/Add');

  let residual = 'inputs_embeds';
  for (let l = 0; l < spec.layers; l++) {
    const p = `/model/layers.${l}`;
    const w = `model.layers.${l}`;
    const x = rmsNorm(b, residual, gamma(b, rnd, `${w}.input_layernorm.weight`, hidden), `${p}/input_layernorm`);
    const proj = (name: string, out: number, n: number) => {
      const m = b.op('MatMul', [x, weights(b, rnd, `${w}.self_attn.${name}.weight`, hidden, out)], `${p}/self_attn/${name}/MatMul`);
      const r = b.op('Reshape', [m, b.ints(b.constName(), [4], [0, 0, n, hd])], `${p}/self_attn/${name}/Reshape`);
      return b.op('Transpose', [r], `${p}/self_attn/${name}/Transpose`, { perm: [0, 2, 1, 3] });
    };
    const q = proj('q_proj', heads * hd, heads);
    const k = b.node('Concat', [`past_key_values.${l}.key`, proj('k_proj', kvHeads * hd, kvHeads)], `${p}/self_attn/Concat`, {
      attrs: { axis: 2 },
      outputs: [`present.${l}.key`],
    })[0];
    const v = b.node('Concat', [`past_key_values.${l}.value`, proj('v_proj', kvHeads * hd, kvHeads)], `${p}/self_attn/Concat_1`, {
      attrs: { axis: 2 },
      outputs: [`present.${l}.value`],
    })[0];
    const repeat = (t: string, name: string) => {
      if (kvHeads === heads) return t;
      const u = b.op('Unsqueeze', [t, b.ints(b.constName(), [1], [2])], `${p}/self_attn/${name}/Unsqueeze`);
      const c = b.op('Concat', Array(heads / kvHeads).fill(u), `${p}/self_attn/${name}/Concat`, { axis: 2 });
      return b.op('Reshape', [c, b.ints(b.constName(), [4], [0, heads, -1, hd])], `${p}/self_attn/${name}/Reshape`);
    };
    const kT = b.op('Transpose', [repeat(k, 'repeat_k')], `${p}/self_attn/Transpose_3`, { perm: [0, 1, 3, 2] });
    const scores = b.op('MatMul', [q, kT], `${p}/self_attn/MatMul`);
    const scaled = b.op('Mul', [scores, b.floats(b.constName(), [], [1 / Math.sqrt(hd)])], `${p}/self_attn/Mul`);
    const masked = b.op('Add', [scaled, bias], `${p}/self_attn/Add`);
    const probs = b.op('Softmax', [masked], `${p}/self_attn/Softmax`, { axis: -1 });
    const ctx = b.op('MatMul', [probs, repeat(v, 'repeat_v')], `${p}/self_attn/MatMul_1`);
    const ctxT = b.op('Transpose', [ctx], `${p}/self_attn/Transpose_4`, { perm: [0, 2, 1, 3] });
    const heads2d = b.op('Reshape', [ctxT, b.ints(b.constName(), [3], [0, 0, heads * hd])], `${p}/self_attn/Reshape_3`);
    let o = b.op('MatMul', [heads2d, weights(b, rnd, `${w}.self_attn.o_proj.weight`, heads * hd, hidden)], `${p}/self_attn/o_proj/MatMul`);
    if (opts.oProjBias) {
      o = b.op(
        'Add',
        [
          b.floats(
            `${w}.self_attn.o_proj.bias`,
            [hidden],
            Array.from({ length: hidden }, () => rnd(0.1)),
          ),
          o,
        ],
        `${p}/self_attn/o_proj/Add`,
      );
    }
    const r1 = b.op('Add', [residual, o], `${p}/Add`);
    const x2 = rmsNorm(b, r1, gamma(b, rnd, `${w}.post_attention_layernorm.weight`, hidden), `${p}/post_attention_layernorm`);
    residual = b.op('Add', [r1, mlp(b, rnd, spec, x2, `${p}/mlp`, w)], `${p}/Add_1`);
  }
  const xf = rmsNorm(b, residual, gamma(b, rnd, 'model.norm.weight', hidden), '/model/norm');
  b.node('MatMul', [xf, weights(b, rnd, 'lm_head.weight', hidden, spec.vocab)], '/lm_head/MatMul', { outputs: ['logits'] });

  if (opts.floatDataFor) {
    for (const t of b.graph.initializer) {
      if (t.data_type === F && opts.floatDataFor(t.name!)) {
        const raw = t.raw_data!;
        t.float_data = Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));
        t.raw_data = undefined;
      }
    }
  }
  if (opts.scrambleNames) b.graph.node.forEach((n, i) => (n.name = `n${(i * 7919) % 10007}`));
  return b.model({ '': 17 });
}

/** 4-bit MatMulNBits weights (block 16, default zero point 8) for a [k, n] matrix. */
function nbitsWeights(b: GraphBuilder, rnd: (s?: number) => number, name: string, k: number, n: number): string[] {
  const block = 16;
  const blocks = Math.ceil(k / block);
  const packed = new Uint8Array(n * blocks * (block / 2));
  const scales: number[] = [];
  for (let col = 0; col < n; col++) {
    for (let kb = 0; kb < blocks; kb++) {
      scales.push(0.02 + Math.abs(rnd(0.02)));
      for (let i = 0; i < block; i += 2) {
        const lo = Math.floor((rnd() + 1) * 8) & 15;
        const hi = Math.floor((rnd() + 1) * 8) & 15;
        packed[(col * blocks + kb) * (block / 2) + i / 2] = lo | (hi << 4);
      }
    }
  }
  return [b.init(uint8Tensor(`${name}.qweight`, [n, blocks, block / 2], packed)), b.floats(`${name}.scales`, [n * blocks], scales)];
}

export interface GenaiOptions {
  /** Layers whose o_proj is MatMulNBits. */
  nbitsOProj?: number[];
}

export function buildGenaiDecoder(spec: DecoderSpec = SMALL, opts: GenaiOptions = {}): ModelProto {
  const b = new GraphBuilder();
  const rnd = seededRandom(spec.seed + 1);
  const { hidden, heads, kvHeads } = spec;
  const hd = hidden / heads;
  const ms = 'com.microsoft';
  b.input('inputs_embeds', F, ['batch_size', 'sequence_length', hidden]);
  b.input('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']);
  b.output('logits', F, ['batch_size', 'sequence_length', spec.vocab]);
  for (let l = 0; l < spec.layers; l++) kvIo(b, spec, l);

  const sum = b.op('ReduceSum', ['attention_mask', b.ints(b.constName(), [1], [1])], '/model/attn_mask_reformat/attn_mask_subgraph/ReduceSum', { keepdims: 0 });
  const seqlensK = b.op(
    'Cast',
    [b.op('Sub', [sum, b.ints(b.constName(), [], [1])], '/model/attn_mask_reformat/attn_mask_subgraph/Sub')],
    '/model/attn_mask_reformat/attn_mask_subgraph/Sub/Cast',
    { to: DataType.INT32 },
  );
  const totalLen = b.op(
    'Cast',
    [
      b.op(
        'Gather',
        [b.op('Shape', ['attention_mask'], '/model/attn_mask_reformat/attn_mask_subgraph/Shape'), b.ints(b.constName(), [], [1])],
        '/model/attn_mask_reformat/attn_mask_subgraph/Gather',
        { axis: 0 },
      ),
    ],
    '/model/attn_mask_reformat/attn_mask_subgraph/Gather/Cast',
    { to: DataType.INT32 },
  );

  const eps = { float: 1e-5 };
  let normed = b.op(
    'SimplifiedLayerNormalization',
    ['inputs_embeds', gamma(b, rnd, 'model.layers.0.input_layernorm.weight', hidden)],
    '/model/layers.0/input_layernorm/LayerNorm',
    {
      axis: -1,
      epsilon: eps,
      stash_type: 1,
    },
  );
  let residual = 'inputs_embeds';
  const skipNorm = (branch: string, res: string, w: string, name: string, branchFirst: boolean, withSum = true) => {
    const outs = b.node('SkipSimplifiedLayerNormalization', branchFirst ? [branch, res, w] : [res, branch, w], name, {
      attrs: { epsilon: eps },
      domain: ms,
      outputs: withSum ? [`${name}/output_0`, '', '', `${name}/output_3`] : [`${name}/output_0`],
    });
    return { normed: outs[0], sum: outs[3] };
  };
  for (let l = 0; l < spec.layers; l++) {
    const p = `/model/layers.${l}`;
    const w = `model.layers.${l}`;
    const proj = (name: string, out: number) => b.op('MatMul', [normed, weights(b, rnd, `${w}.attn.${name}.weight`, hidden, out)], `${p}/attn/${name}/MatMul`);
    const [attn] = b.node(
      'GroupQueryAttention',
      [
        proj('q_proj', heads * hd),
        proj('k_proj', kvHeads * hd),
        proj('v_proj', kvHeads * hd),
        `past_key_values.${l}.key`,
        `past_key_values.${l}.value`,
        seqlensK,
        totalLen,
      ],
      `${p}/attn/GroupQueryAttention`,
      {
        attrs: { num_heads: heads, kv_num_heads: kvHeads, scale: { float: 1 / Math.sqrt(hd) } },
        domain: ms,
        outputs: [`${p}/attn/GroupQueryAttention/output_0`, `present.${l}.key`, `present.${l}.value`],
      },
    );
    const o = opts.nbitsOProj?.includes(l)
      ? b.op(
          'MatMulNBits',
          [attn, ...nbitsWeights(b, rnd, `${w}.attn.o_proj`, heads * hd, hidden)],
          `${p}/attn/o_proj/MatMulNBits`,
          { K: heads * hd, N: hidden, bits: 4, block_size: 16 },
          ms,
        )
      : b.op('MatMul', [attn, weights(b, rnd, `${w}.attn.o_proj.weight`, heads * hd, hidden)], `${p}/attn/o_proj/MatMul`);
    const post = skipNorm(
      o,
      residual,
      gamma(b, rnd, `${w}.post_attention_layernorm.weight`, hidden),
      `${p}/post_attention_layernorm/SkipLayerNorm`,
      l % 2 === 0,
    );
    const down = mlp(b, rnd, spec, post.normed, `${p}/mlp`, w);
    const last = l === spec.layers - 1;
    const nextName = last ? `/model/layers.${spec.layers}/final_norm_layernorm/SkipLayerNorm` : `/model/layers.${l + 1}/input_layernorm/SkipLayerNorm`;
    const next = skipNorm(
      down,
      post.sum,
      gamma(b, rnd, last ? 'model.norm.weight' : `model.layers.${l + 1}.input_layernorm.weight`, hidden),
      nextName,
      l % 2 === 1,
      !last,
    );
    normed = next.normed;
    residual = next.sum;
  }
  b.node('MatMul', [normed, weights(b, rnd, 'lm_head.MatMul.weight', hidden, spec.vocab)], '/lm_head/MatMul', { outputs: ['logits'] });
  return b.model({ '': 17, 'com.microsoft': 1 });
}

export function configFor(spec: DecoderSpec): object {
  return {
    model_type: 'idefics3',
    text_config: {
      num_hidden_layers: spec.layers,
      hidden_size: spec.hidden,
      num_attention_heads: spec.heads,
      num_key_value_heads: spec.kvHeads,
      head_dim: spec.hidden / spec.heads,
      vocab_size: spec.vocab,
    },
  };
}

/** A pack directory holding just what prepare / merge read. */
export function writePack(dir: string, model: ModelProto, spec: DecoderSpec = SMALL): string {
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(configFor(spec), null, 2));
  writeModel(join(dir, 'onnx', 'decoder_model_merged.onnx'), model);
  return dir;
}
