/**
 * Input-adaptive revision and probes read from the prefill (issue 12 items 3 and 4), inside one batched decode.
 * References: the PyTorch goldens of the tiny pack (a gate that opens fully must give the static revision's
 * reference tokens, one that stays closed the unrevised ones), and the gate/probe value recomputed by hand from a
 * teacher-forced readTaps frame of the same generation prompt.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalVlmEngine, type GenerationRequest, type LinearProbe, type RevisionFeed } from '@libs/vlm';
import { TINY_VLM, goldenImage, goldenPrompt, loadVlmGolden } from './golden';

const golden = loadVlmGolden();
const prompt = goldenPrompt(golden.messages);
const textPrompt = goldenPrompt(golden.text_only.messages);
const image = goldenImage();
const layerFeed: RevisionFeed = { layer: Float32Array.from(golden.revision.layer.data), positions: 'last' };
const headFeed: RevisionFeed = { head: Float32Array.from(golden.revision.head.data), positions: 'last' };

/** A probe on layer 1 whose weights are a fixed pseudo-random pattern (any direction works for the plumbing). */
function probeOf(hidden: number, bias = 0.25): LinearProbe {
  const weights = Float32Array.from({ length: hidden }, (_, i) => Math.sin(i * 1.7) / Math.sqrt(hidden));
  const center = Float32Array.from({ length: hidden }, (_, i) => 0.01 * Math.cos(i));
  return { layer: 1, weights, bias, center };
}

/** z recomputed here, in float64, from a frame: the reference the engine's probe value is held to. */
function handProbe(p: LinearProbe, layerTap: Float32Array, hidden: number): number {
  let z = p.bias;
  for (let i = 0; i < hidden; i++) z += p.weights[i] * (layerTap[p.layer * hidden + i] - p.center![i]);
  return z;
}

describe('gated revision and prefill probes on the tiny pack', () => {
  let engine: LocalVlmEngine;
  let hidden: number;
  let probe: LinearProbe;
  let z: number;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM, scheduler: { maxBatchSize: 8 } });
    hidden = engine.info().hidden;
    probe = probeOf(hidden);
    const [frame] = await engine.readTaps([{ prompt, image }]);
    z = handProbe(probe, frame.layer, hidden);
  });
  afterAll(() => engine.close());

  const run = (revision: RevisionFeed | undefined, extra: Partial<GenerationRequest> = {}): GenerationRequest => ({
    prompt,
    image,
    revision,
    maxNewTokens: golden.max_new_tokens,
    ignoreEos: true,
    ...extra,
  });

  it('reads probes from the prefill at the last prompt token: the value of the teacher-forced frame', async () => {
    const [plain, revised] = await engine.generate([run(undefined, { probes: [probe] }), run(headFeed, { probes: [probe] })]);
    expect(plain.probes![0]).toBeCloseTo(z, 4);
    expect(plain.tokens).toEqual(golden.cases.none.tokens);
    // A static revision moves the frame the probe reads (head revision at 'last' changes layer 1's residual).
    expect(Math.abs(revised.probes![0] - z)).toBeGreaterThan(1e-4);
  });

  it('a gate above its high mark gives the static revision, PyTorch reference tokens; below its low mark, the unrevised ones', async () => {
    const open: RevisionFeed = { ...layerFeed, gate: { probe, low: z - 2, high: z - 1 } };
    const closed: RevisionFeed = { ...layerFeed, gate: { probe, low: z + 1, high: z + 2 } };
    const [o, c] = await engine.generate([run(open), run(closed)]);
    expect(o.revisionScale).toBe(1);
    expect(o.tokens).toEqual(golden.cases.layer_last.tokens);
    expect(c.revisionScale).toBe(0);
    expect(c.tokens).toEqual(golden.cases.none.tokens);
  });

  it('a partial gate scales the feed by clamp((z - low) / (high - low)), in a batch of rows with other profiles', async () => {
    const low = z - 0.3;
    const high = z + 0.1;
    const expected = (z - low) / (high - low);
    const gated: RevisionFeed = { ...headFeed, gate: { probe, low, high } };
    const scaled: RevisionFeed = { head: headFeed.head!.map((x) => x * expected), positions: 'last' };
    const [alone] = await engine.generate([run(gated)]);
    const [reference] = await engine.generate([run(scaled)]);
    expect(alone.revisionScale).toBeCloseTo(expected, 4);
    expect(alone.tokens).toEqual(reference.tokens);
    // The same gated row batched with an unrevised text row and a static layer row keeps its tokens, and they theirs.
    const [g, t, l] = await engine.generate([
      run(gated),
      { prompt: textPrompt, maxNewTokens: golden.text_only.tokens.length, ignoreEos: true },
      run(layerFeed),
    ]);
    expect(g.tokens).toEqual(alone.tokens);
    expect(t.tokens).toEqual(golden.text_only.tokens);
    expect(l.tokens).toEqual(golden.cases.layer_last.tokens);
  });

  it('a best-of-N conversation resolves its gate once at the prefill: a closed gate samples as no revision', async () => {
    const options = { n: 3, topK: 5, temperature: 1.5, endTokenIds: [], maxTokens: 4, seed: 3 };
    const sample = async (revision?: RevisionFeed) => {
      const h = await engine.open({ prompt, image, revision });
      try {
        return (await engine.sampleCandidates(h, options)).map((c) => c.tokens);
      } finally {
        await engine.release(h);
      }
    };
    const closed = await sample({ ...layerFeed, gate: { probe, low: z + 1, high: z + 2 } });
    expect(closed).toEqual(await sample(undefined));
    const opened = await sample({ ...layerFeed, gate: { probe, low: z - 2, high: z - 1 } });
    expect(opened).toEqual(await sample(layerFeed));
  });

  it('refuses a malformed gate or probe before the row is admitted', async () => {
    await expect(engine.generate([run({ ...layerFeed, gate: { probe, low: 1, high: 1 } })])).rejects.toThrow(/low < high/);
    await expect(engine.generate([run(undefined, { probes: [{ ...probe, layer: 99 }] })])).rejects.toThrow(/probe layer/);
    await expect(engine.generate([run(undefined, { probes: [{ ...probe, weights: new Float32Array(3) }] })])).rejects.toThrow(/weights/);
  });
});
