/**
 * Contrastive sample strategies (IAR's Multi-Instruction, Text-Response, Multi-Response, and our Image-Shift). IAR's
 * exact sample construction is not public (research/iar_hsi.md 1.3 d), so the definitions here are ours; they are
 * written down in docs/safety-methods.md.
 *
 * Class convention: class 1 ("positive") is the state we steer TOWARD, the safe behaviour; the direction is
 * mean(positive) - mean(negative) (MMS) or the probe weight for positive vs negative (PWD), so adding it steers
 * toward safety.
 *   - text-response / multi-response: the label is the response's. positive = 'safe' (a refusal),
 *     negative = 'unsafe' (a harmful answer). Taps at the last token of prompt + response. Multi-response keeps only
 *     refusals to harmful requests in the positive class (issue 12 item 1): a benign answer is 'safe' too, but it
 *     is not the behaviour steered toward, and 2/3 of the FactorySafe positives were benign answers.
 *   - multi-instruction: the label is the instruction's. Taps at the end of the generation prompt, before any
 *     response. There, a model that refuses has recognised the request as harmful: the refusal state is the
 *     harmful-instruction side (Arditi et al. 2024, "Refusal ... is mediated by a single direction": adding
 *     mean(harmful) - mean(harmless) induces refusal). So positive = 'unsafe' instructions, negative = 'safe'
 *     (benign) ones. Pointing the other way would push the model to treat harmful requests as benign: the
 *     attack direction.
 *   - image-shift (issue 12 item 1, IAR's own motivation: the image moves activations away from the text-only
 *     distribution): each harmful instruction is read twice at the generation prompt, text-only (positive: the
 *     model refuses it) and with its image (negative: the image switches the refusal off). Both classes are the
 *     same requests, so the direction is the image's shift alone, not harm vs benign; the positive class is
 *     therefore not a sample label but 'text-only'.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { TapRequest } from '@libs/vlm';
import { readSampleLines } from './jsonl';

export type SampleStrategy = 'multi-instruction' | 'text-response' | 'multi-response' | 'image-shift';
export const SAMPLE_STRATEGIES: readonly SampleStrategy[] = ['multi-instruction', 'text-response', 'multi-response', 'image-shift'];

export type SampleLabel = 'safe' | 'unsafe';

/** What the request is (the FactorySafe calibration files' `kind`); the label says whether the sample is safe. */
export type SampleKind = 'harmful' | 'benign_visual' | 'benign_procedure';
export const SAMPLE_KINDS: readonly SampleKind[] = ['harmful', 'benign_visual', 'benign_procedure'];

export interface CalibrationSample {
  /** Image path, relative to the JSONL file's folder unless absolute. */
  image?: string;
  prompt: string;
  response?: string;
  label: SampleLabel;
  /** The request's kind; multi-response needs it on 'safe' samples to tell a refusal from a benign answer. */
  kind?: SampleKind;
}

/**
 * What the positive class (class 1) is: a sample label for the label contrasts, 'text-only' for image-shift (both
 * classes are the same harmful requests; the positive one is asked without its image). Recorded in the artifact.
 */
export type PositiveClass = SampleLabel | 'text-only';

export interface ContrastSet {
  strategy: SampleStrategy;
  requests: TapRequest[];
  /** 1 = positive (steer toward), 0 = negative; parallel to `requests`. */
  classes: Uint8Array;
  /** What the positive class is (see `positiveClassOf`). */
  positiveClass: PositiveClass;
  /** Indexes into the input samples, parallel to `requests`. */
  sampleIndexes: number[];
}

export class SampleError extends Error {
  readonly name = 'SampleError';
  readonly code = 'samples_invalid';
}

export function positiveClassOf(strategy: SampleStrategy): PositiveClass {
  if (strategy === 'image-shift') return 'text-only';
  return strategy === 'multi-instruction' ? 'unsafe' : 'safe';
}

export function parseSamplesJsonl(text: string, source = 'samples'): CalibrationSample[] {
  const samples: CalibrationSample[] = [];
  for (const { raw, where } of readSampleLines(text, source, (m) => new SampleError(m))) {
    if (raw.response !== undefined && typeof raw.response !== 'string') throw new SampleError(`${where}: "response" must be a string`);
    if (raw.kind !== undefined && !SAMPLE_KINDS.includes(raw.kind as SampleKind))
      throw new SampleError(`${where}: "kind" must be one of ${SAMPLE_KINDS.join(', ')}`);
    const sample: CalibrationSample = {
      prompt: raw.prompt,
      label: raw.label,
      response: raw.response as string | undefined,
      image: raw.image,
    };
    if (raw.kind !== undefined) sample.kind = raw.kind as SampleKind;
    samples.push(sample);
  }
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

/** One tap request of a contrast set and its class. */
interface ContrastEntry {
  request: TapRequest;
  cls: 0 | 1;
}

/**
 * The entries one sample contributes to a strategy's contrast set: none when the strategy does not contrast it,
 * two for image-shift. Throws on a sample the strategy needs but that lacks a field.
 */
function sampleEntries(s: CalibrationSample, where: string, strategy: SampleStrategy, readImage: ImageReader): ContrastEntry[] {
  if (strategy === 'multi-instruction') {
    if (!s.image) throw new SampleError(`${where}: multi-instruction samples need an image`);
    // The response is ignored on purpose: the contrast is the instruction kind, read before answering.
    return [{ request: { prompt: s.prompt, image: readImage(s.image) }, cls: s.label === 'unsafe' ? 1 : 0 }];
  }
  if (strategy === 'text-response') {
    if (s.response === undefined) throw new SampleError(`${where}: text-response samples need a response`);
    // Text-only by definition: an image in the sample is not shown to the model.
    return [{ request: { prompt: s.prompt, response: s.response }, cls: s.label === 'safe' ? 1 : 0 }];
  }
  if (strategy === 'multi-response') {
    if (!s.image) throw new SampleError(`${where}: multi-response samples need an image`);
    if (s.response === undefined) throw new SampleError(`${where}: multi-response samples need a response`);
    // Issue 12 item 1: the positive class is refusals to harmful requests only. A benign answer is 'safe' as well,
    // but steering toward "answered a benign question" is not steering toward refusal; such samples are dropped.
    if (s.label === 'safe' && s.kind === undefined)
      throw new SampleError(`${where}: multi-response 'safe' samples need a "kind" (a refusal of a harmful request is kind "harmful")`);
    if (s.label === 'safe' && s.kind !== 'harmful') return [];
    return [{ request: { prompt: s.prompt, image: readImage(s.image), response: s.response }, cls: s.label === 'safe' ? 1 : 0 }];
  }
  // image-shift (issue 12 item 1). Benign samples are ignored: the contrast is the image's shift of a HARMFUL
  // request, the state the model refuses from (text-only) against the one it answers from (with the image); a
  // benign request is answered either way, so its shift is not the one that switches refusal off, and mixing it in
  // would add the benign requests' own image shift to the direction. A harmful sample without an image has no pair.
  if (s.label !== 'unsafe' || !s.image) return [];
  // Taps at the generation prompt (no response): the decision point, where the text-only and with-image states
  // differ; a teacher-forced response would encode what was written instead.
  return [
    { request: { prompt: s.prompt }, cls: 1 },
    { request: { prompt: s.prompt, image: readImage(s.image) }, cls: 0 },
  ];
}

/**
 * Turns samples into tap requests and classes for one strategy; rejects samples that do not fit, drops the ones the
 * strategy does not contrast (multi-response's benign answers, image-shift's benign samples).
 */
export function buildContrastSet(samples: readonly CalibrationSample[], strategy: SampleStrategy, readImage: ImageReader): ContrastSet {
  if (!SAMPLE_STRATEGIES.includes(strategy)) throw new SampleError(`unknown strategy ${JSON.stringify(strategy)}`);
  const requests: TapRequest[] = [];
  const classes: number[] = [];
  const sampleIndexes: number[] = [];
  samples.forEach((s, i) => {
    for (const e of sampleEntries(s, `sample ${i + 1}`, strategy, readImage)) {
      requests.push(e.request);
      classes.push(e.cls);
      sampleIndexes.push(i);
    }
  });
  const positives = classes.filter((c) => c === 1).length;
  if (positives < 2 || classes.length - positives < 2) {
    throw new SampleError(`${strategy} needs at least 2 samples of each class (got ${positives} positive, ${classes.length - positives} negative)`);
  }
  return { strategy, requests, classes: Uint8Array.from(classes), positiveClass: positiveClassOf(strategy), sampleIndexes };
}
