/**
 * libs/vlm on packs whose decoders come from the layouts people ship (models/tiny-<layout>-*, built by
 * tools/modelzoo/layouts from an independent PyTorch implementation): Gemma 3 sandwich norms with head_dim !=
 * hidden/heads, q/k norms and sliding-window layers under a Gemma 3 `text_config`; Phi-3 fused qkv_proj; Qwen2
 * qkv biases; the Gemma 3 layout with MatMulNBits 4-bit projections; a float16 Qwen2 body behind float32 I/O; the same
 * with float16 I/O throughout (optimum --dtype fp16: the runtime converts at the session boundary); the
 * Gemma 3 layout in onnxruntime-genai's node patterns (GroupQueryAttention with rotary and a local window). Each pack is prepared here (`model prepare`, from structure), then loaded and run by the runtime:
 * greedy tokens exact and taps within 1e-4 of the reference, with no revision and with layer- and head-level
 * revision (the reference applies them with forward hooks); prefill logits within 1e-4 through the revisable graph
 * (2e-2 for the fp16 packs); merged batches (every case in one batch, and prompts of different lengths) give each row
 * its golden / single-row tokens, GroupQueryAttention decoders included.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareRevisableDecoder } from '@libs/onnx-graph';
import { LocalVlmEngine, VlmProcessor, loadVlmPack } from '@libs/vlm';
import type { RevisionFeed, TapFrame } from '@libs/vlm';
import { fromHalfArray, toHalfArray } from '../src/float16';
import { type GoldenCase, maxAbsDiff } from './golden';

type CaseName = 'none' | 'layer_last' | 'layer_all' | 'head_last' | 'head_all';

interface LayoutGolden {
  layout: string;
  dims: { layers: number; hidden: number; heads: number; kv_heads: number; head_dim: number; vocab: number };
  messages: { role: string; content: { type: string; text?: string }[] }[];
  prompt_text: string;
  input_ids: number[];
  revision: { layer: { data: number[] }; head: { data: number[] } };
  max_new_tokens: number;
  cases: Record<CaseName, GoldenCase>;
}

const PACKS = [
  { name: 'tiny-sandwich-gemma3', attentionOutput: 'o_proj+post-norm', qkv: 'separate', qkvBias: false },
  { name: 'tiny-fused-qkv-phi3', attentionOutput: 'o_proj', qkv: 'fused', qkvBias: false },
  { name: 'tiny-qkv-bias-qwen2', attentionOutput: 'o_proj', qkv: 'separate', qkvBias: true },
  // MatMulNBits 4-bit projections; the reference computes with the dequantized weights.
  { name: 'tiny-q4-gemma3', attentionOutput: 'o_proj+post-norm', qkv: 'separate', qkvBias: false, oProjOp: 'MatMulNBits' },
  // float16 body behind float32 I/O; the reference stays float32, so values agree to fp16 precision (tokens exactly:
  // the golden's top-2 gaps are >= 0.07, an order above the measured fp16 error).
  { name: 'tiny-fp16-qwen2', attentionOutput: 'o_proj', qkv: 'separate', qkvBias: true, activationType: 'float16', tol: 2e-2 },
  // float16 I/O as optimum --dtype fp16 exports it (inputs_embeds, KV cache, logits, embed_tokens' output): the runtime
  // converts at the session boundary and keeps the cache float16. Reference float32, so fp16 tolerance again.
  {
    name: 'tiny-fp16io-qwen2',
    attentionOutput: 'o_proj',
    qkv: 'separate',
    qkvBias: true,
    activationType: 'float16',
    ioType: 'float16',
    tol: 2e-2,
  },
  // The Gemma 3 reference written in onnxruntime-genai's node patterns: GroupQueryAttention with rotary and
  // local_window_size, SimplifiedLayerNormalization, fused Skip norms, no position_ids input.
  {
    name: 'tiny-genai-gemma3',
    attentionOutput: 'o_proj+post-norm',
    qkv: 'separate',
    qkvBias: false,
    residual: 'skip-norm',
    attentionOp: 'GroupQueryAttention',
  },
];
const CASES: CaseName[] = ['none', 'layer_last', 'layer_all', 'head_last', 'head_all'];

const root = mkdtempSync(join(tmpdir(), 'vlm-layout-packs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.each(PACKS)(
  '$name',
  ({
    name,
    attentionOutput,
    qkv,
    qkvBias,
    oProjOp = 'MatMul',
    activationType = 'float32',
    tol = 1e-4,
    residual = 'add',
    attentionOp = 'Softmax',
    ioType = 'float32',
  }) => {
    const shipped = resolve(__dirname, '../../../models', name);
    const golden: LayoutGolden = JSON.parse(readFileSync(join(shipped, 'reference', 'golden.json'), 'utf8'));
    const dir = join(root, name);
    const prompt = golden.messages[0].content.find((c) => c.type === 'text')!.text!;
    const feedFor = (c: CaseName): RevisionFeed | undefined => {
      const { level, positions } = golden.cases[c];
      if (!level) return undefined;
      const data = Float32Array.from(golden.revision[level].data);
      return level === 'layer' ? { layer: data, positions: positions! } : { head: data, positions: positions! };
    };
    let engine: LocalVlmEngine;

    beforeAll(async () => {
      cpSync(shipped, dir, { recursive: true });
      const report = await prepareRevisableDecoder(dir);
      expect(report.status).toBe('written');
      expect(report.info.layout).toMatchObject({
        residual,
        attention_op: attentionOp,
        attention_output: attentionOutput,
        o_proj_op: oProjOp,
        qkv,
        qkv_bias: qkvBias,
        activation_type: activationType,
      });
      engine = await LocalVlmEngine.open({ packDir: dir });
    });
    afterAll(() => engine?.close());

    it('reads the dimensions from the config (head_dim as declared, not hidden / heads)', () => {
      const { text } = loadVlmPack(dir);
      const d = golden.dims;
      expect(text).toEqual({ layers: d.layers, hidden: d.hidden, heads: d.heads, kvHeads: d.kv_heads, headDim: d.head_dim, vocabSize: d.vocab });
      if (golden.layout === 'gemma3') expect(text.heads * text.headDim).not.toBe(text.hidden);
    });

    it('reports how the decoder is fed: GroupQueryAttention found in the graph, I/O type from the declared inputs', () => {
      expect(engine.info().decoder).toEqual({ ioType, groupQueryAttention: attentionOp === 'GroupQueryAttention' });
    });

    it('encodes the prompt as the reference does', async () => {
      const processor = new VlmProcessor(loadVlmPack(dir));
      expect(processor.templatedPrompt({ prompt })).toBe(golden.prompt_text);
      expect((await processor.encode({ prompt })).inputIds).toEqual(golden.input_ids);
    });

    it.each(CASES)(`%s: greedy tokens exact, prefill taps within ${tol}`, async (c) => {
      const expected = golden.cases[c];
      const [result] = await engine.generate([{ prompt, revision: feedFor(c), maxNewTokens: golden.max_new_tokens, ignoreEos: true, taps: true }]);
      expect(result.tokens).toEqual(expected.tokens);
      expect(maxAbsDiff(result.taps![0].layer, expected.tap_layer.flat())).toBeLessThan(tol);
      expect(maxAbsDiff(result.taps![0].head, expected.tap_head.flat())).toBeLessThan(tol);
    });

    // GroupQueryAttention decoders included: the scheduler admits the first row alone and merges the rest into the
    // running batch, so rows sit at different cache lengths (padded), which GQA only handles packed from column 0.
    it('one batch holding every case gives each row its reference tokens', async () => {
      const results = await engine.generate(CASES.map((c) => ({ prompt, revision: feedFor(c), maxNewTokens: golden.max_new_tokens, ignoreEos: true })));
      expect(results.map((r) => r.tokens)).toEqual(CASES.map((c) => golden.cases[c].tokens));
    });

    // A row preempted for another tenant's row leaves the batch with its own cache (takeRow) and rejoins it later
    // (resume): in this layout's cache alignment too (GroupQueryAttention packs from column 0).
    it("a row preempted by another group's row and resumed gets its reference tokens", async () => {
      const one = await LocalVlmEngine.open({ packDir: dir, scheduler: { maxBatchSize: 1 } });
      try {
        const long = { prompt, revision: feedFor('head_last'), maxNewTokens: 64, ignoreEos: true };
        const [alone] = await one.generate([long]);
        let seen = 0;
        let release!: () => void;
        const mid = new Promise<void>((r) => (release = r));
        const busy = one.generate([{ ...long, group: 'a' }], () => void (++seen === 4 && release()));
        await mid;
        const [b] = await one.generate([{ prompt, maxNewTokens: golden.max_new_tokens, ignoreEos: true, group: 'b' }]);
        const [a] = await busy;
        expect(one.schedulerStats().preemptions).toBeGreaterThanOrEqual(1);
        expect(b.tokens).toEqual(golden.cases.none.tokens);
        expect(a.tokens).toEqual(alone.tokens);
        expect(a.tokens.slice(0, golden.max_new_tokens)).toEqual(golden.cases.head_last.tokens);
      } finally {
        await one.close();
      }
    });

    it('rows of different prompt lengths prefilled and decoded together get their single-row tokens', async () => {
      const prompts = [prompt, `${prompt} and then some more words`, 'hi', `${prompt} ${prompt}`];
      const requests = prompts.map((p, i) => ({ prompt: p, revision: feedFor(CASES[i % CASES.length]), maxNewTokens: golden.max_new_tokens, ignoreEos: true }));
      const alone: number[][] = [];
      for (const r of requests) alone.push((await engine.generate([r]))[0].tokens);
      const together = await engine.generate(requests);
      expect(together.map((r) => r.tokens)).toEqual(alone);
    });

    it(`taps of prompts of different lengths read in one call match each read alone within ${tol}`, async () => {
      const requests = [
        { prompt, response: 'a short answer', revision: feedFor('layer_all') },
        { prompt: 'hi', revision: feedFor('head_last') },
        { prompt, response: 'a longer answer than the first one was' },
      ];
      const alone: TapFrame[] = [];
      for (const r of requests) alone.push((await engine.readTaps([r]))[0]);
      const together = await engine.readTaps(requests);
      together.forEach((t, i) => {
        expect(maxAbsDiff(t.layer, alone[i].layer), `row ${i}`).toBeLessThan(tol);
        expect(maxAbsDiff(t.head, alone[i].head), `row ${i}`).toBeLessThan(tol);
      });
    });

    it(`prefill logits through the revisable decoder match the reference within ${tol}`, async () => {
      const d = golden.dims;
      const opts = { graphOptimizationLevel: 'disabled' as const, intraOpNumThreads: 1 };
      const embed = await ort.InferenceSession.create(join(dir, 'onnx', 'embed_tokens.onnx'), opts);
      const decoder = await ort.InferenceSession.create(join(dir, 'onnx', 'decoder_model_merged_revisable.onnx'), opts);
      const n = golden.input_ids.length;
      const ids = new ort.Tensor('int64', BigInt64Array.from(golden.input_ids.map(BigInt)), [1, n]);
      const embeds = (await embed.run({ input_ids: ids })).inputs_embeds;
      // Each float input as the decoder declares it (float16-I/O decoders: embeds and cache float16, logits too).
      const half = ioType === 'float16';
      expect(embeds.type).toBe(ioType);
      const declared = new Map(decoder.inputMetadata.map((m) => [m.name, m.isTensor ? m.type : undefined]));
      const float = (name: string, data: Float32Array, dims: number[]) =>
        declared.get(name) === 'float16' ? new ort.Tensor('float16', toHalfArray(data), dims) : new ort.Tensor('float32', data, dims);
      for (const c of CASES) {
        const { level, positions } = golden.cases[c];
        const feeds: Record<string, ort.Tensor> = {
          inputs_embeds: embeds,
          attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
          ...(decoder.inputNames.includes('position_ids')
            ? {
                position_ids: new ort.Tensor(
                  'int64',
                  BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
                  [1, n],
                ),
              }
            : {}),
          revision_layer: float('revision_layer', level === 'layer' ? Float32Array.from(golden.revision.layer.data) : new Float32Array(d.layers * d.hidden), [
            1,
            d.layers,
            d.hidden,
          ]),
          revision_head: float(
            'revision_head',
            level === 'head' ? Float32Array.from(golden.revision.head.data) : new Float32Array(d.layers * d.heads * d.head_dim),
            [1, d.layers, d.heads * d.head_dim],
          ),
          revision_mask: float(
            'revision_mask',
            Float32Array.from({ length: n }, (_, i) => (positions === 'all' || i === n - 1 ? 1 : 0)),
            [1, n],
          ),
        };
        for (let l = 0; l < d.layers; l++) {
          for (const k of ['key', 'value'])
            feeds[`past_key_values.${l}.${k}`] = float(`past_key_values.${l}.${k}`, new Float32Array(0), [1, d.kv_heads, 0, d.head_dim]);
        }
        const out = (await decoder.run(feeds)).logits;
        expect(out.type).toBe(ioType);
        const logits = half ? fromHalfArray(out.data as Uint16Array) : (out.data as Float32Array);
        expect(maxAbsDiff(logits.subarray((n - 1) * d.vocab), golden.cases[c].prefill_last_logits), c).toBeLessThan(tol);
      }
    });
  },
);
