/**
 * Independent check of the surgery against PyTorch: tools/modelzoo/tinyvlm writes golden taps, logits and greedy
 * tokens computed with forward hooks (layer output += r_l; o_proj input += r_l) into models/tiny-vlm/reference.
 * Here the ONNX pack (embed_tokens + vision_encoder + the revisable decoder prepared from the shipped decoder)
 * must reproduce them. Skipped until the pack and its golden file exist.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REVISABLE_FILE, prepareRevisableDecoder } from '@libs/onnx-graph';

const pack = resolve(__dirname, '../../../models/tiny-vlm');
const goldenPath = join(pack, 'reference', 'golden.json');

interface Case {
  level: 'layer' | 'head' | null;
  positions: 'last' | 'all' | null;
  prefill_last_logits: number[];
  tap_layer: number[][];
  tap_head: number[][];
  tokens: number[];
}

// The pack ships with the repository: a missing file fails here rather than skipping the comparison.
describe('tiny-vlm revisable decoder vs the PyTorch golden', () => {
  const golden = JSON.parse(readFileSync(goldenPath, 'utf8'));
  const dir = mkdtempSync(join(tmpdir(), 'onnx-graph-golden-'));
  let embed: ort.InferenceSession;
  let decoder: ort.InferenceSession;
  let prompt: Float32Array;
  const { layers, hidden, kv_heads: kvHeads, head_dim: headDim, vocab } = golden?.dims ?? {};

  beforeAll(async () => {
    mkdirSync(join(dir, 'onnx'));
    copyFileSync(join(pack, 'config.json'), join(dir, 'config.json'));
    copyFileSync(join(pack, 'onnx', 'decoder_model_merged.onnx'), join(dir, 'onnx', 'decoder_model_merged.onnx'));
    await prepareRevisableDecoder(dir);
    embed = await ort.InferenceSession.create(join(pack, 'onnx', 'embed_tokens.onnx'));
    decoder = await ort.InferenceSession.create(join(dir, 'onnx', REVISABLE_FILE));
    const vision = await ort.InferenceSession.create(join(pack, 'onnx', 'vision_encoder.onnx'));
    const pv = golden.pixel_values;
    const { image_features } = await vision.run({
      pixel_values: new ort.Tensor('float32', Float32Array.from(pv.data), pv.dims),
      pixel_attention_mask: new ort.Tensor('bool', new Uint8Array(64 * 64).fill(1), golden.pixel_attention_mask.dims),
    });
    // Idefics3 merge: image-token positions take the image features in order.
    const ids: number[] = golden.input_ids;
    prompt = await embedIds(ids);
    const feats = image_features.data as Float32Array;
    let k = 0;
    ids.forEach((id, i) => id === golden.special_token_ids['<image>'] && prompt.set(feats.subarray(k * hidden, ++k * hidden), i * hidden));
    expect(k).toBe(golden.dims.image_seq_len);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function embedIds(ids: number[]): Promise<Float32Array> {
    const out = await embed.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
    return Float32Array.from(out.inputs_embeds.data as Float32Array);
  }

  function revisionFeeds(c: Case, seq: number): Record<string, ort.Tensor> {
    const layer = new Float32Array(layers * hidden);
    const head = new Float32Array(layers * hidden);
    if (c.level === 'layer') layer.set(golden.revision.layer.data);
    if (c.level === 'head') head.set(golden.revision.head.data);
    const mask = new Float32Array(seq);
    if (c.positions === 'all') mask.fill(1);
    else mask[seq - 1] = 1;
    return {
      revision_layer: new ort.Tensor('float32', layer, [1, layers, hidden]),
      revision_head: new ort.Tensor('float32', head, [1, layers, hidden]),
      revision_mask: new ort.Tensor('float32', mask, [1, seq]),
    };
  }

  const argmax = (x: Float32Array) => x.reduce((best, v, i) => (v > x[best] ? i : best), 0);

  it.each(['none', 'layer_last', 'layer_all', 'head_last', 'head_all'])('case %s: taps, prefill logits and greedy tokens match', async (name) => {
    const c: Case = golden.cases[name];
    const n = golden.input_ids.length;
    let past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < layers; l++) {
      for (const kind of ['key', 'value']) past[`past_key_values.${l}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
    }
    const step = async (embeds: Float32Array, seq: number, total: number) => {
      const out = await decoder.run({
        inputs_embeds: new ort.Tensor('float32', embeds, [1, seq, hidden]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
        position_ids: new ort.Tensor(
          'int64',
          BigInt64Array.from({ length: seq }, (_, i) => BigInt(total - seq + i)),
          [1, seq],
        ),
        ...past,
        ...revisionFeeds(c, seq),
      });
      past = {};
      for (let l = 0; l < layers; l++) for (const kind of ['key', 'value']) past[`past_key_values.${l}.${kind}`] = out[`present.${l}.${kind}`];
      return out;
    };

    const first = await step(prompt, n, n);
    const logits = (first.logits.data as Float32Array).subarray((n - 1) * vocab, n * vocab);
    const close = (actual: ArrayLike<number>, expected: number[], tol: number) => {
      expect(actual.length).toBe(expected.length);
      let worst = 0;
      for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
      expect(worst).toBeLessThan(tol);
    };
    close(logits, c.prefill_last_logits, 1e-3);
    close(first.tap_layer.data as Float32Array, c.tap_layer.flat(), 1e-4);
    close(first.tap_head.data as Float32Array, c.tap_head.flat(), 1e-4);

    const tokens = [argmax(logits)];
    let total = n;
    while (tokens.length < c.tokens.length) {
      total++;
      const out = await step(await embedIds([tokens[tokens.length - 1]]), 1, total);
      tokens.push(argmax(out.logits.data as Float32Array));
    }
    expect(tokens).toEqual(c.tokens);
  });
});
