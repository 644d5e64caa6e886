/**
 * Every supported decoder layout (layout-fixtures.ts), run in onnxruntime-node before and after surgery:
 * found from structure with the layout it is, zero revision bit-identical (prefill and KV-cache decode), a revision
 * moving exactly its tap slice, taps reading the tensors they claim, and, with sandwich norms, the head revision's
 * effect on the stream renormalised (bounded in alpha) as libs/onnx-graph/README.md says.
 */
import { describe, expect, it } from 'vitest';
import { DataType, ModelProto, addRevisionPoints, findDecoderStructure, seededRandom } from '@libs/onnx-graph';
import { LAYOUTS, LAYOUT_SPEC, LayoutOptions, buildLayoutDecoder, configOf, layoutName } from './layout-fixtures';
import { LayoutFeed, layoutFeeds, openLayoutSession, runLayout } from './layout-run';

const spec = LAYOUT_SPEC;
const headWidth = spec.heads * spec.headDim;

function revisable(model: ModelProto, o: LayoutOptions): ModelProto {
  const copy = structuredClone(model);
  addRevisionPoints(copy, findDecoderStructure(copy, { config: configOf(o) }));
  return copy;
}

const vector = (n: number, seed: number, scale = 1) => {
  const rnd = seededRandom(seed);
  return Float32Array.from({ length: n }, () => rnd(scale));
};
const at = (t: Float32Array, b: number, l: number, width: number) => t.subarray((b * spec.layers + l) * width, (b * spec.layers + l + 1) * width);
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
/**
 * float16 on the CPU EP: onnxruntime runs the fp16 ops it has no fp16 kernel for (MatMul among them) in float32
 * behind inserted Casts and rounds to fp16 where an fp16-capable op sits. An inserted revision Add is such a
 * point, so with a zero revision float16 outputs agree to fp16 rounding (a few units in the last place of the
 * tensor's largest value), not bit for bit; float32 graphs stay bit-identical.
 */
const ulp16 = (x: number) => 2 ** (Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -14))) - 10);
const withinHalfRounding = (a: Float32Array, b: Float32Array) => {
  const scale = ulp16(a.reduce((m, x) => Math.max(m, Math.abs(x)), 0));
  const worst = a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0) / scale;
  return worst <= 4;
};
const norm = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, x, i) => s + (x - b[i]) ** 2, 0));

// GroupQueryAttention on CPU wants batch 1 when a multi-token step has past context: prefill and decode cover it.
const shapesFor = (o: LayoutOptions): LayoutFeed[] =>
  o.style === 'optimum'
    ? [
        { batch: 2, seq: 3, past: 0 },
        { batch: 2, seq: 3, past: 2 },
        { batch: 2, seq: 1, past: 4 },
      ]
    : [
        { batch: 2, seq: 3, past: 0 },
        { batch: 2, seq: 1, past: 4 },
      ];

describe.each(LAYOUTS.map((o) => ({ o, name: layoutName(o) })))('layout $name', ({ o }) => {
  const original = buildLayoutDecoder(o);
  const rev = revisable(original, o);
  const half = !!o.float16;
  // float16 taps are float32 views of float16 sums: the vector arrives rounded to the point's precision.
  const tol = half ? 2e-2 : 1e-5;
  const feeds = (s: Awaited<ReturnType<typeof openLayoutSession>>, f: LayoutFeed) => layoutFeeds(spec, f, half, s.inputNames);

  it('is found from structure and described as the layout it is', () => {
    const s = findDecoderStructure(original, { config: configOf(o) });
    expect([s.layers.length, s.hidden, s.heads, s.headDim]).toEqual([spec.layers, spec.hidden, spec.heads, spec.headDim]);
    expect(s.layout).toEqual({
      residual: o.style === 'optimum' ? 'add' : o.attentionAdd ? 'add+skip-norm' : 'skip-norm',
      attention_output: o.sandwich ? 'o_proj+post-norm' : 'o_proj',
      mlp_output: o.sandwich ? 'projection+post-norm' : 'projection',
      attention_op: o.style === 'optimum' ? 'Softmax' : 'GroupQueryAttention',
      o_proj_op: o.nbits ? 'MatMulNBits' : 'MatMul',
      qkv: o.fusedQkv ? 'fused' : 'separate',
      qkv_bias: !!o.qkvBias,
      activation_type: half ? 'float16' : 'float32',
      sliding_window_layers: o.style === 'genai' && o.slidingWindow ? [0, 2] : [],
    });
    for (const l of s.layers) {
      expect(l.oProj.name).toMatch(new RegExp(`^/model/layers\\.${l.layer}/(self_attn|attn)/o_proj/`));
      expect(l.postAttentionNorm?.node.name ?? null).toEqual(o.sandwich ? expect.stringContaining(`layers.${l.layer}/post_attention_layernorm/`) : null);
      expect(l.postFeedforwardNorm?.node.name ?? null).toEqual(o.sandwich ? expect.stringContaining(`layers.${l.layer}/post_feedforward_layernorm/`) : null);
      expect([l.headElemType, l.layerElemType]).toEqual(half ? [DataType.FLOAT16, DataType.FLOAT16] : [DataType.FLOAT, DataType.FLOAT]);
    }
  });

  it('needs no node names', () => {
    const scrambled = structuredClone(original);
    scrambled.graph.node.forEach((n, i) => (n.name = `n${(i * 7919) % 10007}`));
    const a = findDecoderStructure(original, { config: configOf(o) });
    const b = findDecoderStructure(scrambled, { config: configOf(o) });
    expect(b.layers.map((l) => [l.oProjInput, l.mlp.branchInput])).toEqual(a.layers.map((l) => [l.oProjInput, l.mlp.branchInput]));
    expect(b.layout).toEqual(a.layout);
  });

  it.each(shapesFor(o))(
    `zero revision keeps every output ${half ? 'to fp16 rounding' : 'bit-identical'} (batch $batch, seq $seq, past $past)`,
    async (shape) => {
      const a = await openLayoutSession(original);
      const b = await openLayoutSession(rev);
      const outA = await runLayout(a, feeds(a, shape));
      const outB = await runLayout(b, feeds(b, shape));
      for (const name of a.outputNames) {
        if (half) expect(withinHalfRounding(outB.values[name], outA.values[name]), name).toBe(true);
        else expect(outB.bytes[name].equals(outA.bytes[name]), name).toBe(true);
      }
      expect(Array.from(outA.values.logits).every(Number.isFinite)).toBe(true);
      expect([outB.types.tap_layer, outB.types.tap_head]).toEqual(['float32', 'float32']);
      expect(outB.values.tap_layer.length).toBe(shape.batch * spec.layers * spec.hidden);
      expect(outB.values.tap_head.length).toBe(shape.batch * spec.layers * headWidth);
    },
  );

  it('taps read o_proj input and the stream after each layer, at the last position', async () => {
    const s = findDecoderStructure(original, { config: configOf(o) });
    const probed = structuredClone(original);
    const probes = s.layers.map((l) => ({ layer: l.layer, head: l.oProjInput, stream: l.mlp.sumOutput }));
    const elem = half ? DataType.FLOAT16 : DataType.FLOAT;
    for (const p of probes) for (const name of [p.head, p.stream]) if (name) probed.graph.output.push({ name, type: { tensor_type: { elem_type: elem } } });
    const shape = { batch: 2, seq: 3, past: 0 };
    const a = await openLayoutSession(probed);
    const b = await openLayoutSession(rev);
    const outA = await runLayout(a, feeds(a, shape));
    const outB = await runLayout(b, feeds(b, shape));
    const lastOf = (t: Float32Array, batch: number, width: number) =>
      t.subarray((batch * shape.seq + shape.seq - 1) * width, (batch * shape.seq + shape.seq) * width);
    const same = (tap: Float32Array, probe: Float32Array) => (half ? expect(withinHalfRounding(tap, probe)).toBe(true) : expect(tap).toEqual(probe));
    for (const p of probes) {
      for (let batch = 0; batch < shape.batch; batch++) {
        same(at(outB.values.tap_head, batch, p.layer, headWidth), lastOf(outA.values[p.head], batch, headWidth));
        if (p.stream) same(at(outB.values.tap_layer, batch, p.layer, spec.hidden), lastOf(outA.values[p.stream], batch, spec.hidden));
      }
    }
  });

  it.each([0, 1, 2])('a layer revision at layer %i moves tap_layer[:, l] by the vector, in the masked row only', async (l) => {
    const shape = { batch: 2, seq: 3, past: 0 };
    const s = await openLayoutSession(rev);
    const v = vector(spec.hidden, 11 + l);
    const revisionLayer = new Float32Array(shape.batch * spec.layers * spec.hidden);
    at(revisionLayer, 0, l, spec.hidden).set(v);
    at(revisionLayer, 1, l, spec.hidden).set(v);
    const revisionMask = new Float32Array(shape.batch * shape.seq);
    revisionMask[shape.seq - 1] = 1; // row 0, last position; row 1 stays unrevised
    const base = await runLayout(s, feeds(s, shape));
    const out = await runLayout(s, feeds(s, { ...shape, revisionLayer, revisionMask }));
    const delta = at(out.values.tap_layer, 0, l, spec.hidden).map((x, i) => x - at(base.values.tap_layer, 0, l, spec.hidden)[i]);
    expect(maxAbs(delta, v)).toBeLessThanOrEqual(tol);
    for (let k = 0; k < l; k++) expect(maxAbs(at(out.values.tap_layer, 0, k, spec.hidden), at(base.values.tap_layer, 0, k, spec.hidden))).toBe(0);
    const rowLen = shape.seq * spec.vocab;
    expect(out.bytes.logits.subarray(rowLen * (half ? 2 : 4)).equals(base.bytes.logits.subarray(rowLen * (half ? 2 : 4)))).toBe(true);
    expect(maxAbs(out.values.logits.subarray(0, rowLen), base.values.logits.subarray(0, rowLen))).toBeGreaterThan(0);
  });

  it.each([
    [0, 0],
    [1, 3],
    [2, 1],
  ])('a head revision at layer %i head %i moves only that slice of tap_head[:, l] (decode step with KV cache)', async (l, h) => {
    const shape = { batch: 2, seq: 1, past: 4 };
    const s = await openLayoutSession(rev);
    const v = vector(spec.headDim, 31 + l);
    const revisionHead = new Float32Array(shape.batch * spec.layers * headWidth);
    for (let b = 0; b < shape.batch; b++) at(revisionHead, b, l, headWidth).set(v, h * spec.headDim);
    const revisionMask = new Float32Array(shape.batch * shape.seq).fill(1);
    const base = await runLayout(s, feeds(s, shape));
    const out = await runLayout(s, feeds(s, { ...shape, revisionHead, revisionMask }));
    const expected = new Float32Array(headWidth);
    expected.set(v, h * spec.headDim);
    for (let b = 0; b < shape.batch; b++) {
      const delta = at(out.values.tap_head, b, l, headWidth).map((x, i) => x - at(base.values.tap_head, b, l, headWidth)[i]);
      expect(maxAbs(delta, expected)).toBeLessThanOrEqual(tol);
    }
    expect(maxAbs(at(out.values.tap_layer, 0, l, spec.hidden), at(base.values.tap_layer, 0, l, spec.hidden))).toBeGreaterThan(0);
  });

  it(`a head revision's effect on the stream ${o.sandwich ? 'saturates in alpha (post-norm renormalises it)' : 'grows with alpha'}`, async () => {
    const shape = { batch: 1, seq: 1, past: 2 };
    const s = await openLayoutSession(rev);
    const l = 1;
    const v = vector(headWidth, 77);
    const moved = async (alpha: number) => {
      const revisionHead = new Float32Array(spec.layers * headWidth);
      at(revisionHead, 0, l, headWidth).set(v.map((x) => x * alpha));
      const base = await runLayout(s, feeds(s, shape));
      const out = await runLayout(s, feeds(s, { ...shape, revisionHead, revisionMask: Float32Array.of(1) }));
      return norm(at(out.values.tap_layer, 0, l, spec.hidden), at(base.values.tap_layer, 0, l, spec.hidden));
    };
    const ratio = (await moved(half ? 300 : 1e4)) / (await moved(half ? 30 : 1e2));
    if (o.sandwich) expect(ratio).toBeLessThan(1.1);
    else expect(ratio).toBeGreaterThan(half ? 5 : 50);
  });
});
