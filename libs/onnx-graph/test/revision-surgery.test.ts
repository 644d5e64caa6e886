/**
 * Runs original and revisable decoders with onnxruntime-node: zero revision changes nothing, and a revision
 * shows up in the taps as exactly the vector that was added.
 */
import { describe, expect, it } from 'vitest';
import { AlreadyRevisableError, ModelProto, addRevisionPoints, findDecoderStructure, seededRandom } from '@libs/onnx-graph';
import { DecoderSpec, SMALL, buildGenaiDecoder, buildOptimumDecoder, configFor } from './decoder-fixtures';
import { Feed, maxAbsDiff, makeFeeds, openSession, run } from './ort-run';

const config = (configFor(SMALL) as { text_config: object }).text_config;

function revisable(model: ModelProto): ModelProto {
  const copy = structuredClone(model);
  addRevisionPoints(copy, findDecoderStructure(copy, { config }));
  return copy;
}

const vector = (n: number, seed: number) => {
  const rnd = seededRandom(seed);
  return Float32Array.from({ length: n }, () => rnd(2));
};

/** Rows of [batch, layers, width] as [b][l] views. */
const at = (t: Float32Array, spec: DecoderSpec, b: number, l: number, width = spec.hidden) =>
  t.subarray((b * spec.layers + l) * width, (b * spec.layers + l + 1) * width);

const styles: Array<{ name: string; build: () => ModelProto; shapes: Feed[] }> = [
  {
    name: 'optimum',
    build: () => buildOptimumDecoder(SMALL, { oProjBias: true }),
    shapes: [
      { batch: 2, seq: 3, past: 2 },
      { batch: 2, seq: 1, past: 4 },
    ],
  },
  {
    // GroupQueryAttention on CPU wants batch 1 when a multi-token step has past context; prefill and decode cover it.
    name: 'genai (GroupQueryAttention, SkipSimplifiedLayerNormalization, MatMulNBits)',
    build: () => buildGenaiDecoder(SMALL, { nbitsOProj: [1] }),
    shapes: [
      { batch: 2, seq: 3, past: 0 },
      { batch: 2, seq: 1, past: 4 },
    ],
  },
];

describe.each(styles)('revisable decoder, $name', ({ build, shapes }) => {
  const spec = SMALL;
  const original = build();
  const rev = revisable(original);

  it('refuses to revise twice', () => {
    expect(() => findDecoderStructure(rev, { config })).toThrow(/already has input 'revision_layer': it is a revisable decoder/);
    expect(() => addRevisionPoints(rev, findDecoderStructure(original, { config }))).toThrow(AlreadyRevisableError);
  });

  it.each(shapes)('zero revision keeps logits and present.* bit-identical (batch $batch, seq $seq, past $past)', async (shape) => {
    const a = await openSession(original);
    const b = await openSession(rev);
    const outA = await run(a, makeFeeds(a, spec, shape));
    const outB = await run(b, makeFeeds(b, spec, shape));
    for (const name of a.outputNames) expect(Buffer.from(outB[name].buffer).equals(Buffer.from(outA[name].buffer)), name).toBe(true);
    expect(outB.tap_layer.length).toBe(shape.batch * spec.layers * spec.hidden);
    expect(outB.tap_head.length).toBe(shape.batch * spec.layers * spec.hidden);
  });

  it('zero revision stays within 1e-6 with full graph optimizations', async () => {
    const shape = shapes[0];
    const a = await openSession(original, true);
    const b = await openSession(rev, true);
    const outA = await run(a, makeFeeds(a, spec, shape));
    const outB = await run(b, makeFeeds(b, spec, shape));
    for (const name of a.outputNames) expect(maxAbsDiff(outA[name], outB[name]), name).toBeLessThanOrEqual(1e-6);
  });

  it.each([0, 1, 2])('layer revision at layer %i moves tap_layer[:, l] by exactly the vector, in the masked row only', async (l) => {
    const shape = shapes[0];
    const s = await openSession(rev);
    const v = vector(spec.hidden, 11 + l);
    const revisionLayer = new Float32Array(shape.batch * spec.layers * spec.hidden);
    at(revisionLayer, spec, 0, l).set(v);
    at(revisionLayer, spec, 1, l).set(v);
    const revisionMask = new Float32Array(shape.batch * shape.seq);
    revisionMask[shape.seq - 1] = 1; // row 0, last position; row 1 stays unrevised
    const base = await run(s, makeFeeds(s, spec, shape));
    const out = await run(s, makeFeeds(s, spec, { ...shape, revisionLayer, revisionMask }));
    const delta = at(out.tap_layer, spec, 0, l).map((x, i) => x - at(base.tap_layer, spec, 0, l)[i]);
    expect(maxAbsDiff(delta, v)).toBeLessThanOrEqual(1e-5);
    for (let k = 0; k < l; k++) expect(maxAbsDiff(at(out.tap_layer, spec, 0, k), at(base.tap_layer, spec, 0, k))).toBe(0);
    const rowLen = shape.seq * spec.vocab;
    expect(maxAbsDiff(out.logits.subarray(rowLen), base.logits.subarray(rowLen))).toBe(0);
    expect(maxAbsDiff(out.logits.subarray(0, rowLen), base.logits.subarray(0, rowLen))).toBeGreaterThan(0);
  });

  it.each([
    [0, 0],
    [1, 3],
    [2, 1],
  ])('head revision at layer %i head %i moves only that slice of tap_head[:, l]', async (l, h) => {
    const shape = shapes[1];
    const hd = spec.hidden / spec.heads;
    const s = await openSession(rev);
    const v = vector(hd, 31 + l);
    const revisionHead = new Float32Array(shape.batch * spec.layers * spec.hidden);
    for (let b = 0; b < shape.batch; b++) at(revisionHead, spec, b, l).set(v, h * hd);
    const revisionMask = new Float32Array(shape.batch * shape.seq).fill(1);
    const base = await run(s, makeFeeds(s, spec, shape));
    const out = await run(s, makeFeeds(s, spec, { ...shape, revisionHead, revisionMask }));
    for (let b = 0; b < shape.batch; b++) {
      const delta = at(out.tap_head, spec, b, l).map((x, i) => x - at(base.tap_head, spec, b, l)[i]);
      const expected = new Float32Array(spec.hidden);
      expected.set(v, h * hd);
      expect(maxAbsDiff(delta, expected)).toBeLessThanOrEqual(1e-5);
    }
    // o_proj sees the revised input: the residual after this layer moves too.
    expect(maxAbsDiff(at(out.tap_layer, spec, 0, l), at(base.tap_layer, spec, 0, l))).toBeGreaterThan(0);
  });

  it('a revision masked to an earlier position leaves the last position of that layer alone but reaches later layers', async () => {
    const shape = shapes[0];
    const l = 0;
    const s = await openSession(rev);
    const revisionLayer = new Float32Array(shape.batch * spec.layers * spec.hidden);
    at(revisionLayer, spec, 0, l).set(vector(spec.hidden, 5));
    const revisionMask = new Float32Array(shape.batch * shape.seq);
    revisionMask[0] = 1; // row 0, first position
    const base = await run(s, makeFeeds(s, spec, shape));
    const out = await run(s, makeFeeds(s, spec, { ...shape, revisionLayer, revisionMask }));
    expect(maxAbsDiff(at(out.tap_layer, spec, 0, l), at(base.tap_layer, spec, 0, l))).toBe(0);
    expect(maxAbsDiff(at(out.tap_layer, spec, 0, l + 1), at(base.tap_layer, spec, 0, l + 1))).toBeGreaterThan(0);
    expect(maxAbsDiff(out['present.1.key'], base['present.1.key'])).toBeGreaterThan(0);
  });
});

describe('taps read the tensors they claim to', () => {
  it('tap_head = o_proj input and tap_layer = residual after the layer, at the last position (optimum)', async () => {
    const spec = SMALL;
    const original = buildOptimumDecoder();
    const structure = findDecoderStructure(original, { config });
    const probed = structuredClone(original);
    for (const l of structure.layers) {
      for (const name of [l.oProjInput, l.mlp.sumOutput!]) probed.graph.output.push({ name, type: { tensor_type: { elem_type: 1 } } });
    }
    const rev = revisable(original);
    const shape = { batch: 2, seq: 3, past: 1 };
    const a = await openSession(probed);
    const b = await openSession(rev);
    const outA = await run(a, makeFeeds(a, spec, shape));
    const outB = await run(b, makeFeeds(b, spec, shape));
    const lastOf = (t: Float32Array, batch: number) =>
      t.subarray((batch * shape.seq + shape.seq - 1) * spec.hidden, (batch * shape.seq + shape.seq) * spec.hidden);
    for (const l of structure.layers) {
      for (let batch = 0; batch < shape.batch; batch++) {
        expect(at(outB.tap_head, spec, batch, l.layer)).toEqual(lastOf(outA[l.oProjInput], batch));
        expect(at(outB.tap_layer, spec, batch, l.layer)).toEqual(lastOf(outA[l.mlp.sumOutput!], batch));
      }
    }
  });
});

describe('older opsets', () => {
  it('uses the Unsqueeze axes attribute below opset 13', () => {
    const model = buildOptimumDecoder();
    model.opset_import = [{ domain: '', version: 12 }];
    addRevisionPoints(model, findDecoderStructure(model, { config }));
    const added = model.graph.node.filter((n) => n.op_type === 'Unsqueeze' && n.name!.startsWith('/revision/'));
    // One for the mask and one per revision input; per-layer points need none.
    expect(added.length).toBe(3);
    for (const n of added) {
      expect(n.input).toHaveLength(1);
      expect(n.attribute.map((a) => a.name)).toEqual(['axes']);
    }
  });
});
