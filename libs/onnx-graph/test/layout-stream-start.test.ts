/**
 * Where the residual stream starts when it is not the embeddings themselves: Gemma scales the lookup by
 * sqrt(hidden) before layer 0, and fp16 bodies exported with float32 I/O cast the embeddings first. The structure
 * search follows such elementwise adapters; the revision points then take the body's type (casts at the points).
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { DataType, ModelProto, addRevisionPoints, findDecoderStructure, floatTensor, makeNode } from '@libs/onnx-graph';
import { LAYOUT_SPEC, LayoutOptions, buildLayoutDecoder, configOf } from './layout-fixtures';
import { layoutFeeds, openLayoutSession, runLayout } from './layout-run';

const spec = LAYOUT_SPEC;

/** Replaces every use of `tensor` by `replacement`. */
function rewire(model: ModelProto, tensor: string, replacement: string) {
  for (const n of model.graph.node) n.input = n.input.map((i) => (i === tensor ? replacement : i));
}

/** Gemma text decoder: input_ids -> Gather -> Mul(sqrt(hidden)) -> layers. */
function withScaledLookup(o: LayoutOptions): ModelProto {
  const model = buildLayoutDecoder(o);
  const g = model.graph;
  rewire(model, 'inputs_embeds', '/model/embed_tokens/Mul_output_0');
  g.input[0] = {
    name: 'input_ids',
    type: { tensor_type: { elem_type: DataType.INT64, shape: { dim: [{ dim_param: 'batch_size' }, { dim_param: 'sequence_length' }] } } },
  };
  const table = Float32Array.from({ length: spec.vocab * spec.hidden }, (_, i) => Math.sin(i) * 0.2);
  g.initializer.push(floatTensor('model.embed_tokens.weight', [spec.vocab, spec.hidden], table), floatTensor('embed_scale', [], [Math.sqrt(spec.hidden)]));
  g.node.unshift(
    makeNode('Gather', ['model.embed_tokens.weight', 'input_ids'], ['/model/embed_tokens/Gather_output_0'], '/model/embed_tokens/Gather'),
    makeNode('Mul', ['/model/embed_tokens/Gather_output_0', 'embed_scale'], ['/model/embed_tokens/Mul_output_0'], '/model/embed_tokens/Mul'),
  );
  return model;
}

/** An fp16 body behind float32 inputs_embeds (logits and cache stay fp16). */
function withFloat32Input(o: LayoutOptions): ModelProto {
  const model = buildLayoutDecoder({ ...o, float16: true });
  rewire(model, 'inputs_embeds', '/model/Cast_embeds_output_0');
  model.graph.input[0].type!.tensor_type!.elem_type = DataType.FLOAT;
  model.graph.node.unshift(makeNode('Cast', ['inputs_embeds'], ['/model/Cast_embeds_output_0'], '/model/Cast_embeds', { to: DataType.FLOAT16 }));
  return model;
}

describe('stream start adapters', () => {
  it.each([{ style: 'optimum', sandwich: true } as const, { style: 'genai', sandwich: true } as const])(
    'Gemma embedding scale ($style): the stream starts after the Mul, zero revision is identical',
    async (o) => {
      const original = withScaledLookup(o);
      const s = findDecoderStructure(original, { config: configOf(o) });
      expect(s.embeddings).toBe('/model/embed_tokens/Mul_output_0');
      expect(s.layers).toHaveLength(spec.layers);
      const rev = structuredClone(original);
      addRevisionPoints(rev, findDecoderStructure(rev, { config: configOf(o) }));
      const a = await openLayoutSession(original);
      const b = await openLayoutSession(rev);
      const ids = (names: readonly string[]) => {
        const f = layoutFeeds(
          spec,
          { batch: 1, seq: 3, past: 0 },
          false,
          names.filter((n) => n !== 'input_ids'),
        );
        return { ...f, input_ids: new ort.Tensor('int64', BigInt64Array.from([1n, 4n, 7n]), [1, 3]) };
      };
      const outA = await runLayout(a, ids(a.inputNames));
      const outB = await runLayout(b, ids(b.inputNames));
      for (const name of a.outputNames) expect(outB.bytes[name].equals(outA.bytes[name]), name).toBe(true);
    },
  );

  it.each([{ style: 'optimum', sandwich: true } as const, { style: 'genai', fusedQkv: true } as const])(
    'fp16 body behind float32 inputs_embeds ($style): points are float16, the prepared graph loads and a revision lands',
    async (o) => {
      const original = withFloat32Input(o);
      const s = findDecoderStructure(original, { config: configOf(o) });
      expect(s.embeddings).toBe('/model/Cast_embeds_output_0');
      expect(s.elemType).toBe(DataType.FLOAT16);
      expect(s.layers.map((l) => [l.headElemType, l.layerElemType])).toEqual(Array(spec.layers).fill([DataType.FLOAT16, DataType.FLOAT16]));
      const rev = structuredClone(original);
      addRevisionPoints(rev, findDecoderStructure(rev, { config: configOf(o) }));
      const b = await openLayoutSession(rev);
      const shape = { batch: 1, seq: 2, past: 0 };
      const feeds = layoutFeeds(spec, shape, true, b.inputNames);
      feeds.inputs_embeds = new ort.Tensor(
        'float32',
        Float32Array.from({ length: 2 * spec.hidden }, (_, i) => Math.cos(i)),
        [1, 2, spec.hidden],
      );
      const base = await runLayout(b, feeds);
      const revisionLayer = new Float32Array(spec.layers * spec.hidden);
      revisionLayer.fill(0.5, 0, spec.hidden);
      const out = await runLayout(b, {
        ...feeds,
        ...layoutFeeds(spec, { ...shape, revisionLayer, revisionMask: Float32Array.of(0, 1) }, true, ['revision_layer', 'revision_mask']),
      });
      const moved = out.values.tap_layer.subarray(0, spec.hidden).map((x, i) => x - base.values.tap_layer[i]);
      expect(Math.max(...moved.map((d) => Math.abs(d - 0.5)))).toBeLessThan(2e-2);
    },
  );
});
