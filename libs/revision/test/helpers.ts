import type { ModelInfo, RevisionFeed, TapFrame, TapRequest } from '@libs/vlm';
import { seededRandom } from '@libs/vlm';
import type { ArtifactDraft } from '../src/artifact';

export function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
}

export function modelInfo(over: Partial<ModelInfo> = {}): ModelInfo {
  return {
    name: 'synthetic',
    fingerprint: 'f'.repeat(64),
    layers: 2,
    hidden: 8,
    heads: 4,
    headDim: 16,
    vocabSize: 10,
    executionProvider: 'cpu',
    revisable: true,
    decoder: { ioType: 'float32', groupQueryAttention: false },
    ...over,
  };
}

export function unitVector(dim: number, seed: number): Float64Array {
  const g = gaussian(seed);
  const v = Float64Array.from({ length: dim }, () => g());
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/**
 * Synthetic taps: every head and layer is N(0, 1) noise plus a class-independent offset; one head (and one layer)
 * carries the class signal +-delta/2 along a known unit vector.
 */
export function plantedFrames(opts: {
  info: ModelInfo;
  perClass: number;
  signalHead: { layer: number; head: number };
  signalLayer: number;
  direction: Float64Array;
  layerDirection: Float64Array;
  delta: number;
  seed: number;
}): { frames: TapFrame[]; classes: Uint8Array } {
  const { info } = opts;
  const g = gaussian(opts.seed);
  const offsetHead = Float64Array.from({ length: info.layers * info.heads * info.headDim }, () => 3 * g());
  const offsetLayer = Float64Array.from({ length: info.layers * info.hidden }, () => 3 * g());
  const frames: TapFrame[] = [];
  const classes: number[] = [];
  for (let i = 0; i < 2 * opts.perClass; i++) {
    const cls = i % 2;
    const sign = cls ? 0.5 : -0.5;
    const head = Float32Array.from(offsetHead, (o) => o + g());
    const layer = Float32Array.from(offsetLayer, (o) => o + g());
    const hs = (opts.signalHead.layer * info.heads + opts.signalHead.head) * info.headDim;
    for (let j = 0; j < info.headDim; j++) head[hs + j] += sign * opts.delta * opts.direction[j];
    const ls = opts.signalLayer * info.hidden;
    for (let j = 0; j < info.hidden; j++) layer[ls + j] += sign * opts.delta * opts.layerDirection[j];
    frames.push({ head, layer });
    classes.push(cls);
  }
  return { frames, classes: Uint8Array.from(classes) };
}

/**
 * Fake runtime for calibration: request i (prompt "s<i>") answers with frames[i]; a revision feed is added to the
 * tapped vectors as the real decoder does at the revised unit, and `headToFinal` maps head-level revisions onto the
 * final layer (a stand-in for the downstream effect that the causal pass measures).
 */
export function fakeTapEngine(info: ModelInfo, frames: TapFrame[], headToFinal?: (head: Float32Array) => Float32Array) {
  const calls: TapRequest[][] = [];
  return {
    calls,
    info: () => info,
    async readTaps(requests: TapRequest[]): Promise<TapFrame[]> {
      calls.push(requests);
      return requests.map((r) => {
        const base = frames[Number(r.prompt.slice(1))];
        const layer = base.layer.slice();
        const head = base.head.slice();
        const rev: RevisionFeed | undefined = r.revision;
        if (rev?.layer) for (let i = 0; i < layer.length; i++) layer[i] += rev.layer[i];
        if (rev?.head) {
          for (let i = 0; i < head.length; i++) head[i] += rev.head[i];
          if (headToFinal) {
            const d = headToFinal(rev.head);
            const off = (info.layers - 1) * info.hidden;
            for (let i = 0; i < info.hidden; i++) layer[off + i] += d[i];
          }
        }
        return { layer, head };
      });
    },
  };
}

export const FINGERPRINT = 'a'.repeat(64);

export function headDraft(): { draft: ArtifactDraft; directions: Float32Array } {
  // 2 layers x 2 heads x 4 dims; heads L0.H1 and L1.H0 selected.
  const directions = new Float32Array(16);
  directions.set([0.6, 0.8, 0, 0], 4);
  directions.set([0, 0, 1, 0], 8);
  const draft: ArtifactDraft = {
    method: 'mms',
    strategy: 'multi-response',
    level: 'head',
    positiveClass: 'safe',
    rankedBy: 'probe-accuracy',
    model: { name: 'synthetic', fingerprint: FINGERPRINT, layers: 2, hidden: 8, heads: 2, headDim: 4 },
    selection: [
      { layer: 0, head: 1, sigma: 2, probeAccuracy: 1, rank: 1 },
      { layer: 1, head: 0, sigma: 0.5, probeAccuracy: 0.9, rank: 2 },
    ],
    samples: { positive: 4, negative: 4, train: 6, holdout: 2 },
    calibration: { topK: 2 },
  };
  return { draft, directions };
}

export interface CliOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a modctl command in this process with console.log / console.error captured. */
export async function captureCli(command: (argv: string[]) => Promise<number>, argv: string[]): Promise<CliOutcome> {
  const [log, err] = [console.log, console.error];
  const out: string[] = [];
  const errs: string[] = [];
  console.log = (...a: unknown[]) => out.push(a.join(' '));
  console.error = (...a: unknown[]) => errs.push(a.join(' '));
  try {
    const code = await command(argv);
    return { code, stdout: out.join('\n'), stderr: errs.join('\n') };
  } finally {
    console.log = log;
    console.error = err;
  }
}
