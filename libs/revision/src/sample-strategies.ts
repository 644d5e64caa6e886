/**
 * Contrastive sample strategies (IAR's Multi-Instruction, Text-Response, Multi-Response). IAR's exact sample
 * construction is not public (research/iar_hsi.md 1.3 d), so the definitions here are ours; they are written
 * down in docs/safety-methods.md.
 *
 * Class convention: class 1 ("positive") is the state we steer TOWARD, the safe behaviour; the direction is
 * mean(positive) - mean(negative) (MMS) or the probe weight for positive vs negative (PWD), so adding it steers
 * toward safety.
 *   - text-response / multi-response: the label is the response's. positive = 'safe' (a refusal),
 *     negative = 'unsafe' (a harmful answer). Taps at the last token of prompt + response.
 *   - multi-instruction: the label is the instruction's. Taps at the end of the generation prompt, before any
 *     response. There, a model that refuses has recognised the request as harmful: the refusal state is the
 *     harmful-instruction side (Arditi et al. 2024, "Refusal ... is mediated by a single direction": adding
 *     mean(harmful) - mean(harmless) induces refusal). So positive = 'unsafe' instructions, negative = 'safe'
 *     (benign) ones. Pointing the other way would push the model to treat harmful requests as benign: the
 *     attack direction.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { TapRequest } from '@libs/vlm';

export type SampleStrategy = 'multi-instruction' | 'text-response' | 'multi-response';
export const SAMPLE_STRATEGIES: readonly SampleStrategy[] = ['multi-instruction', 'text-response', 'multi-response'];

export type SampleLabel = 'safe' | 'unsafe';

export interface CalibrationSample {
  /** Image path, relative to the JSONL file's folder unless absolute. */
  image?: string;
  prompt: string;
  response?: string;
  label: SampleLabel;
}

export interface ContrastSet {
  strategy: SampleStrategy;
  requests: TapRequest[];
  /** 1 = positive (steer toward), 0 = negative; parallel to `requests`. */
  classes: Uint8Array;
  /** Which sample label is the positive class. */
  positiveLabel: SampleLabel;
  /** Indexes into the input samples, parallel to `requests`. */
  sampleIndexes: number[];
}

export class SampleError extends Error {
  readonly name = 'SampleError';
  readonly code = 'samples_invalid';
}

export function positiveLabelOf(strategy: SampleStrategy): SampleLabel {
  return strategy === 'multi-instruction' ? 'unsafe' : 'safe';
}

export function parseSamplesJsonl(text: string, source = 'samples'): CalibrationSample[] {
  const samples: CalibrationSample[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${source}:${i + 1}`;
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(line);
    } catch (err) {
      throw new SampleError(`${where}: not JSON (${(err as Error).message})`);
    }
    if (typeof raw.prompt !== 'string' || !raw.prompt.trim()) throw new SampleError(`${where}: "prompt" must be a non-empty string`);
    if (raw.label !== 'safe' && raw.label !== 'unsafe') throw new SampleError(`${where}: "label" must be "safe" or "unsafe"`);
    if (raw.response !== undefined && typeof raw.response !== 'string') throw new SampleError(`${where}: "response" must be a string`);
    if (raw.image !== undefined && typeof raw.image !== 'string') throw new SampleError(`${where}: "image" must be a path`);
    samples.push({ prompt: raw.prompt, label: raw.label, response: raw.response as string | undefined, image: raw.image as string | undefined });
  });
  return samples;
}

export function readSamplesFile(path: string): { samples: CalibrationSample[]; baseDir: string } {
  return { samples: parseSamplesJsonl(readFileSync(path, 'utf8'), path), baseDir: dirname(resolve(path)) };
}

export type ImageReader = (path: string) => Uint8Array;

export function fileImageReader(baseDir: string): ImageReader {
  const cache = new Map<string, Uint8Array>();
  return (p) => {
    const full = isAbsolute(p) ? p : resolve(baseDir, p);
    let bytes = cache.get(full);
    if (!bytes) {
      bytes = new Uint8Array(readFileSync(full));
      cache.set(full, bytes);
    }
    return bytes;
  };
}

/** Turns samples into teacher-forced tap requests and classes for one strategy; rejects samples that do not fit. */
export function buildContrastSet(samples: readonly CalibrationSample[], strategy: SampleStrategy, readImage: ImageReader): ContrastSet {
  if (!SAMPLE_STRATEGIES.includes(strategy)) throw new SampleError(`unknown strategy ${JSON.stringify(strategy)}`);
  const positiveLabel = positiveLabelOf(strategy);
  const requests: TapRequest[] = [];
  const classes: number[] = [];
  const sampleIndexes: number[] = [];
  samples.forEach((s, i) => {
    const where = `sample ${i + 1}`;
    let request: TapRequest;
    if (strategy === 'multi-instruction') {
      if (!s.image) throw new SampleError(`${where}: multi-instruction samples need an image`);
      // The response is ignored on purpose: the contrast is the instruction kind, read before answering.
      request = { prompt: s.prompt, image: readImage(s.image) };
    } else if (strategy === 'text-response') {
      if (s.response === undefined) throw new SampleError(`${where}: text-response samples need a response`);
      // Text-only by definition: an image in the sample is not shown to the model.
      request = { prompt: s.prompt, response: s.response };
    } else {
      if (!s.image) throw new SampleError(`${where}: multi-response samples need an image`);
      if (s.response === undefined) throw new SampleError(`${where}: multi-response samples need a response`);
      request = { prompt: s.prompt, image: readImage(s.image), response: s.response };
    }
    requests.push(request);
    classes.push(s.label === positiveLabel ? 1 : 0);
    sampleIndexes.push(i);
  });
  const positives = classes.filter((c) => c === 1).length;
  if (positives < 2 || classes.length - positives < 2) {
    throw new SampleError(`${strategy} needs at least 2 samples of each class (got ${positives} positive, ${classes.length - positives} negative)`);
  }
  return { strategy, requests, classes: Uint8Array.from(classes), positiveLabel, sampleIndexes };
}
