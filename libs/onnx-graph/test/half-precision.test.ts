/**
 * Half-precision decoders (common for GPU exports): revision inputs and taps stay float32 at the boundary,
 * the graph casts to and from its own type inside.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  DataType,
  ModelProto,
  addRevisionPoints,
  encodeModel,
  findDecoderStructure,
  floatToHalf,
  halfToFloat,
  readFloatValues,
  seededRandom,
  withFloatValues,
} from '@libs/onnx-graph';
import { SMALL, buildGenaiDecoder, buildOptimumDecoder, configFor } from './decoder-fixtures';

const config = (configFor(SMALL) as { text_config: object }).text_config;

function toHalf(m: ModelProto): ModelProto {
  m.graph.initializer = m.graph.initializer.map((t) =>
    t.data_type === DataType.FLOAT ? withFloatValues({ ...t, data_type: DataType.FLOAT16 }, readFloatValues(t)) : t,
  );
  for (const v of [...m.graph.input, ...m.graph.output]) {
    if (v.type!.tensor_type!.elem_type === DataType.FLOAT) v.type!.tensor_type!.elem_type = DataType.FLOAT16;
  }
  for (const n of m.graph.node)
    for (const a of n.attribute) if (n.op_type === 'Cast' && a.name === 'to' && Number(a.i) === DataType.FLOAT) a.i = DataType.FLOAT16;
  return m;
}

describe.each([
  ['optimum', () => buildOptimumDecoder()],
  ['genai', () => buildGenaiDecoder()],
] as const)('float16 %s decoder', (_name, build) => {
  it('zero revision keeps logits; a layer revision moves the float32 tap by the vector (to fp16 precision)', async () => {
    const spec = SMALL;
    const original = toHalf(build());
    const rev = structuredClone(original);
    const structure = findDecoderStructure(rev, { config });
    expect(structure.elemType).toBe(DataType.FLOAT16);
    addRevisionPoints(rev, structure);
    const opts = { graphOptimizationLevel: 'disabled' as const };
    const a = await ort.InferenceSession.create(encodeModel(original), opts);
    const b = await ort.InferenceSession.create(encodeModel(rev), opts);
    const [batch, seq, hd] = [1, 3, spec.hidden / spec.heads];
    const rnd = seededRandom(2);
    const half = (n: number) => Uint16Array.from({ length: n }, () => floatToHalf(rnd(1)));
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float16', half(batch * seq * spec.hidden), [batch, seq, spec.hidden]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(batch * seq).fill(1n), [batch, seq]),
    };
    if (a.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n]), [batch, seq]);
    for (let l = 0; l < spec.layers; l++) {
      for (const k of ['key', 'value']) feeds[`past_key_values.${l}.${k}`] = new ort.Tensor('float16', new Uint16Array(0), [batch, spec.kvHeads, 0, hd]);
    }
    const zeros = {
      revision_layer: new ort.Tensor('float32', new Float32Array(spec.layers * spec.hidden), [batch, spec.layers, spec.hidden]),
      revision_head: new ort.Tensor('float32', new Float32Array(spec.layers * spec.hidden), [batch, spec.layers, spec.hidden]),
      revision_mask: new ort.Tensor('float32', Float32Array.from([0, 0, 1]), [batch, seq]),
    };
    const outA = await a.run(feeds);
    const outB = await b.run({ ...feeds, ...zeros });
    expect(Array.from(outB.logits.data as Uint16Array)).toEqual(Array.from(outA.logits.data as Uint16Array));
    expect(Array.from(outA.logits.data as Uint16Array, halfToFloat).every(Number.isFinite)).toBe(true);
    expect(outB.tap_layer.type).toBe('float32');

    const v = Float32Array.from({ length: spec.hidden }, () => rnd(1));
    const layer = new Float32Array(spec.layers * spec.hidden);
    layer.set(v, spec.hidden);
    const outC = await b.run({ ...feeds, ...zeros, revision_layer: new ort.Tensor('float32', layer, [batch, spec.layers, spec.hidden]) });
    const base = (outB.tap_layer.data as Float32Array).subarray(spec.hidden, 2 * spec.hidden);
    const moved = (outC.tap_layer.data as Float32Array).subarray(spec.hidden, 2 * spec.hidden);
    moved.forEach((x, i) => expect(Math.abs(x - base[i] - halfToFloat(floatToHalf(v[i])))).toBeLessThan(1e-2));
  });
});
