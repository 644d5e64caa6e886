/**
 * The project's own pack (models/tiny-vlm, a LLaMA-style decoder exported by torch.onnx): prepare a copy and check
 * the revisable decoder against the original. Skipped until the pack exists.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REVISABLE_FILE, decodeModel, encodeModel, mergeDecoders, prepareRevisableDecoder, readTextConfig, seededRandom } from '@libs/onnx-graph';
import { DecoderSpec } from './decoder-fixtures';
import { maxAbsDiff, makeFeeds, openSession, run } from './ort-run';

const source = resolve(__dirname, '../../../models/tiny-vlm');

// The pack ships with the repository: a missing file fails here rather than skipping.
describe('tiny-vlm pack', () => {
  const dir = mkdtempSync(join(tmpdir(), 'onnx-graph-tiny-vlm-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'onnx'));
  copyFileSync(join(source, 'config.json'), join(dir, 'config.json'));
  copyFileSync(join(source, 'onnx', 'decoder_model_merged.onnx'), join(dir, 'onnx', 'decoder_model_merged.onnx'));
  const cfg = readTextConfig(dir)!;
  const spec: DecoderSpec = {
    layers: cfg.num_hidden_layers!,
    hidden: cfg.hidden_size!,
    heads: cfg.num_attention_heads!,
    kvHeads: cfg.num_key_value_heads!,
    vocab: 0,
    intermediate: 0,
    seed: 0,
  };

  it('decodes and re-encodes the exported graph byte for byte (no field is lost)', () => {
    const bytes = readFileSync(join(dir, 'onnx', 'decoder_model_merged.onnx'));
    expect(Buffer.from(encodeModel(decodeModel(bytes))).equals(bytes)).toBe(true);
  });

  it('merging the pack with itself reproduces its decoder exactly', async () => {
    const out = `${dir}-self-merge`;
    await expect(mergeDecoders(source, source, join(source, 'inside'), { weight: 0.5 })).rejects.toThrow(/outside the input packs/);
    const report = await mergeDecoders(source, source, out, { weight: 0.5 });
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.files['onnx/decoder_model_merged.onnx']).toBe(report.decoderSha256);
    expect(manifest.merged_from.weight).toBe(0.5);
    expect(existsSync(join(out, 'reference'))).toBe(false);
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
    const merged = readFileSync(join(out, 'onnx', 'decoder_model_merged.onnx'));
    expect(merged.equals(readFileSync(join(dir, 'onnx', 'decoder_model_merged.onnx')))).toBe(true);
    rmSync(out, { recursive: true, force: true });
  });

  it('finds 4 layers from the graph and prepares the decoder', async () => {
    const report = await prepareRevisableDecoder(dir);
    expect(report.status).toBe('written');
    expect([report.info.layers, report.info.hidden, report.info.heads, report.info.head_dim]).toEqual([4, 128, 4, 32]);
    expect(report.info.points.map((p) => p.o_proj)).toEqual([0, 1, 2, 3].map((l) => `/model/layers.${l}/self_attn/o_proj/MatMul`));
  });

  it.each([
    { batch: 1, seq: 5, past: 0, optimize: true },
    { batch: 2, seq: 1, past: 5, optimize: true },
    { batch: 2, seq: 3, past: 2, optimize: false },
  ])('zero revision matches the original (batch $batch, seq $seq, past $past, optimized $optimize)', async ({ optimize, ...shape }) => {
    const a = await openSession(join(dir, 'onnx', 'decoder_model_merged.onnx'), optimize);
    const b = await openSession(join(dir, 'onnx', REVISABLE_FILE), optimize);
    const outA = await run(a, makeFeeds(a, spec, shape));
    const outB = await run(b, makeFeeds(b, spec, shape));
    for (const name of a.outputNames) {
      const diff = maxAbsDiff(outA[name], outB[name]);
      if (optimize) expect(diff, name).toBeLessThanOrEqual(1e-6);
      else expect(diff, name).toBe(0);
    }
  });

  it('a layer revision at layer 2 moves tap_layer[:, 2] by the vector', async () => {
    const s = await openSession(join(dir, 'onnx', REVISABLE_FILE));
    const shape = { batch: 1, seq: 4, past: 0 };
    const rnd = seededRandom(4);
    const v = Float32Array.from({ length: spec.hidden }, () => rnd(1));
    const revisionLayer = new Float32Array(spec.layers * spec.hidden);
    revisionLayer.set(v, 2 * spec.hidden);
    const revisionMask = Float32Array.from([0, 0, 0, 1]);
    const base = await run(s, makeFeeds(s, spec, shape));
    const out = await run(s, makeFeeds(s, spec, { ...shape, revisionLayer, revisionMask }));
    const slice = (t: Float32Array) => t.subarray(2 * spec.hidden, 3 * spec.hidden);
    expect(
      maxAbsDiff(
        slice(out.tap_layer).map((x, i) => x - slice(base.tap_layer)[i]),
        v,
      ),
    ).toBeLessThanOrEqual(1e-5);
  });
});
