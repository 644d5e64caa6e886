/**
 * Feeds and runs for the layout decoders (head_dim from the spec, float16 graphs fed float16), and the float32
 * view of any output, so the layout tests compare numbers the same way for every activation type.
 */
import * as ort from 'onnxruntime-node';
import { ModelProto, encodeModel, floatToHalf, halfToFloat, seededRandom } from '@libs/onnx-graph';
import { LayoutSpec } from './layout-fixtures';

export interface LayoutFeed {
  batch: number;
  seq: number;
  past: number;
  revisionLayer?: Float32Array;
  revisionHead?: Float32Array;
  revisionMask?: Float32Array;
}

export async function openLayoutSession(model: ModelProto | string, optimize = false): Promise<ort.InferenceSession> {
  const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: optimize ? 'all' : 'disabled', intraOpNumThreads: 1 };
  return typeof model === 'string' ? ort.InferenceSession.create(model, opts) : ort.InferenceSession.create(encodeModel(model), opts);
}

export function layoutFeeds(spec: LayoutSpec, feed: LayoutFeed, half: boolean, inputNames: readonly string[], seed = 3): Record<string, ort.Tensor> {
  const rnd = seededRandom(seed);
  const { batch, seq, past } = feed;
  const act = (n: number, dims: number[]) =>
    half
      ? new ort.Tensor(
          'float16',
          Uint16Array.from({ length: n }, () => floatToHalf(rnd(1))),
          dims,
        )
      : new ort.Tensor(
          'float32',
          Float32Array.from({ length: n }, () => rnd(1)),
          dims,
        );
  const width = { layer: spec.layers * spec.hidden, head: spec.layers * spec.heads * spec.headDim };
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of inputNames) {
    if (name === 'inputs_embeds') feeds[name] = act(batch * seq * spec.hidden, [batch, seq, spec.hidden]);
    else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', new BigInt64Array(batch * (past + seq)).fill(1n), [batch, past + seq]);
    else if (name === 'position_ids') {
      feeds[name] = new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt(past + (i % seq))),
        [batch, seq],
      );
    } else if (name.startsWith('past_key_values.')) feeds[name] = act(batch * spec.kvHeads * past * spec.headDim, [batch, spec.kvHeads, past, spec.headDim]);
    else if (name === 'revision_layer') {
      feeds[name] = new ort.Tensor('float32', feed.revisionLayer ?? new Float32Array(batch * width.layer), [batch, spec.layers, spec.hidden]);
    } else if (name === 'revision_head') {
      feeds[name] = new ort.Tensor('float32', feed.revisionHead ?? new Float32Array(batch * width.head), [batch, spec.layers, spec.heads * spec.headDim]);
    } else if (name === 'revision_mask') feeds[name] = new ort.Tensor('float32', feed.revisionMask ?? new Float32Array(batch * seq), [batch, seq]);
    else throw new Error(`no feed for input '${name}'`);
  }
  return feeds;
}

export interface RunResult {
  /** Raw bytes per output, for bit-identity checks. */
  bytes: Record<string, Buffer>;
  /** float32 values per output (float16 outputs widened). */
  values: Record<string, Float32Array>;
  types: Record<string, string>;
}

export async function runLayout(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<RunResult> {
  const out = await session.run(feeds);
  const result: RunResult = { bytes: {}, values: {}, types: {} };
  for (const [k, v] of Object.entries(out)) {
    const data = v.data as Float32Array | Uint16Array;
    result.bytes[k] = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    result.values[k] = v.type === 'float16' ? Float32Array.from(data as Uint16Array, halfToFloat) : (data as Float32Array);
    result.types[k] = v.type;
  }
  return result;
}
