/**
 * Runs decoders with onnxruntime-node (CPU) on deterministic inputs.
 */
import * as ort from 'onnxruntime-node';
import { ModelProto, encodeModel, seededRandom } from '@libs/onnx-graph';
import { DecoderSpec } from './decoder-fixtures';

export type Outputs = Record<string, Float32Array>;

export interface Feed {
  batch: number;
  seq: number;
  past: number;
  /** Revision inputs, only for revisable graphs (zeros when omitted). */
  revisionLayer?: Float32Array;
  revisionHead?: Float32Array;
  revisionMask?: Float32Array;
}

export async function openSession(model: ModelProto | string, optimize = false): Promise<ort.InferenceSession> {
  const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: optimize ? 'all' : 'disabled', intraOpNumThreads: 1 };
  return typeof model === 'string' ? ort.InferenceSession.create(model, opts) : ort.InferenceSession.create(encodeModel(model), opts);
}

export function makeFeeds(session: ort.InferenceSession, spec: DecoderSpec, feed: Feed, seed = 3): Record<string, ort.Tensor> {
  const rnd = seededRandom(seed);
  const { batch, seq, past } = feed;
  const hd = spec.hidden / spec.heads;
  const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => rnd(scale));
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) {
    if (name === 'inputs_embeds') feeds[name] = new ort.Tensor('float32', floats(batch * seq * spec.hidden), [batch, seq, spec.hidden]);
    else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', new BigInt64Array(batch * (past + seq)).fill(1n), [batch, past + seq]);
    else if (name === 'position_ids') {
      feeds[name] = new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt(past + (i % seq))),
        [batch, seq],
      );
    } else if (name.startsWith('past_key_values.')) {
      feeds[name] = new ort.Tensor('float32', floats(batch * spec.kvHeads * past * hd), [batch, spec.kvHeads, past, hd]);
    } else if (name === 'revision_layer') {
      const n = batch * spec.layers * spec.hidden;
      feeds[name] = new ort.Tensor('float32', feed.revisionLayer ?? new Float32Array(n), [batch, spec.layers, spec.hidden]);
    } else if (name === 'revision_head') {
      const n = batch * spec.layers * spec.hidden;
      feeds[name] = new ort.Tensor('float32', feed.revisionHead ?? new Float32Array(n), [batch, spec.layers, spec.heads * hd]);
    } else if (name === 'revision_mask') {
      feeds[name] = new ort.Tensor('float32', feed.revisionMask ?? new Float32Array(batch * seq), [batch, seq]);
    } else throw new Error(`no feed for input '${name}'`);
  }
  return feeds;
}

export async function run(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<Outputs> {
  const result = await session.run(feeds);
  const out: Outputs = {};
  for (const [k, v] of Object.entries(result)) out[k] = v.data as Float32Array;
  return out;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
