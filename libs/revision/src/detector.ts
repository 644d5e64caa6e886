/**
 * Hidden-state detector (HiddenDetect / linear-probe style): a logistic probe on one layer's residual stream at
 * the last prompt token, the decision point the revision reads too. The engine evaluates it on each row's prefill
 * taps (GenerationRequest.probes), so it costs no forward pass of its own; it is ETA's third signal beside CLIP's
 * image risk and the reward pack's answer score.
 *
 * Fitting reads taps WITHOUT a response (`readTaps([{ prompt, image }])`): a TapRequest without response is read at
 * the last token of the generation prompt, the same position as a generation's prefill. Positive = harmful requests
 * (with their image and as text only: the model recognises harm either way, the image only switches the refusal
 * off), negative = benign requests (with their image, and text-only where the item has a text mode).
 *
 * Artifact (JSON, one file): the probe in the engine's LinearProbe form (`z = weights · (tap[layer] - center) + bias`),
 * the threshold `tau` on `sigmoid(z)` and the calibration report; the model fingerprint is checked on load.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { auroc, rocPoints, tprAtFpr, type RocPoint } from '@libs/evaluation';
import { readProbe, type LinearProbe, type ModelInfo, type TapFrame, type TapRequest } from '@libs/vlm';
import { readTapsBatched, type TapReader } from './calibration';
import { PROBE_DEFAULTS, trainLogisticProbe, type ProbeOptions } from './probe';
import type { ImageReader } from './sample-strategies';
import { seededRandom } from '@libs/vlm';
import { classSeparation, stratifiedSplit } from './selection';
import { readSampleLines } from './jsonl';

export const DETECTOR_KIND = 'hidden-state-detector';
export const DETECTOR_FORMAT_VERSION = 1;
/** The generator's setting naming the artifact ('none' turns the detector off). */
export const DETECTOR_ENV = 'DETECTOR_FILE';
/**
 * Used when DETECTOR_FILE is unset, if the file exists and was fitted on the pack being served.
 * @defaultValue 'config/detectors/factory-vlm.json'
 */
export const DEFAULT_DETECTOR_FILE = 'config/detectors/factory-vlm.json';

export const DETECTOR_DEFAULTS = {
  /** Holdout fraction (of items, stratified by label) the layer is chosen on. */
  holdout: 0.25,
  seed: 0,
  /** Tap requests per readTaps call. */
  batchSize: 8,
  /** tau is the calibration split's threshold at this false-positive rate. */
  targetFpr: 0.01,
  /**
   * tau is read on out-of-fold scores (each calibration request scored by a probe fitted without its item, k folds):
   * they are what an unseen request's score looks like, while the refit probe's own scores are as confident as a
   * probe fitted on them can be. On FactorySafe both separate the calibration split perfectly (the 1% FPR point is
   * then the gap's midpoint) and both let ~3% of the test split's benign requests through: all held-out phrasings.
   */
  thresholdFolds: 5,
};

export type DetectorMode = 'image' | 'text';
export type DetectorLabel = 'safe' | 'unsafe';

/** One calibration request and the modes it is read in. */
export interface DetectorItem {
  id: string;
  prompt: string;
  /** Relative to the samples file's folder unless absolute. */
  image?: string;
  label: DetectorLabel;
  modes: DetectorMode[];
}

/** The tap requests of a calibration set, one per item and mode. */
export interface DetectorSet {
  requests: TapRequest[];
  /** 1 = harmful (the positive class). */
  classes: Uint8Array;
  modes: DetectorMode[];
  /** Item index of each request: the holdout splits items, so a prompt's image and text-only reads stay together. */
  items: number[];
  itemLabels: Uint8Array;
}

export interface LayerReport {
  layer: number;
  /** AUROC on the holdout items of a probe fitted on the training items. */
  holdoutAuroc: number;
  holdoutTprAt1pctFpr: number;
  /** (mean z positive - mean z negative) / pooled std on the holdout: breaks AUROC ties (1.0 on several layers). */
  holdoutSeparation: number;
}

export interface DetectorThreshold {
  /** On the probability scale: flag when sigmoid(z) >= tau. */
  tau: number;
  /** The same threshold on z. */
  tauLogit: number;
  /** On the calibration split, on the scores the threshold was read on (calibration.thresholdScores). */
  tpr: number;
  fpr: number;
}

export interface DetectorArtifact {
  kind: typeof DETECTOR_KIND;
  formatVersion: number;
  model: { name: string; fingerprint: string; layers: number; hidden: number };
  layer: number;
  weights: number[];
  bias: number;
  center: number[];
  /** Flag when hidden_risk = sigmoid(z) >= tau: the calibration split's 1% FPR point. */
  tau: number;
  tauLogit: number;
  targetFpr: number;
  /** The threshold of the best balanced accuracy on the calibration split, reported beside tau. */
  balancedAccuracyThreshold: DetectorThreshold & { balancedAccuracy: number };
  fittedOn: {
    samples?: string;
    items: number;
    requests: number;
    positives: { image: number; text: number };
    negatives: { image: number; text: number };
    holdout: number;
    seed: number;
    probe: Required<ProbeOptions>;
    /** Features are standardised ((x - center) / std) for the fit; the std is folded into `weights`. */
    standardised: true;
  };
  calibration: {
    layers: LayerReport[];
    /** The chosen layer's holdout AUROC and TPR at 1% FPR (before the refit on all calibration data). */
    holdoutAuroc: number;
    holdoutTprAt1pctFpr: number;
    /** The scores tau (and the balanced-accuracy threshold) were read on. */
    thresholdScores: string;
    /** The refit probe on the whole calibration split, at tau. */
    tprAt1pctFpr: number;
    fprAtTau: number;
    auroc: number;
    converged: boolean;
    iterations: number;
  };
  createdAt: string;
}

export type DetectorErrorCode =
  | 'detector_missing'
  | 'detector_malformed'
  | 'detector_unsupported_version'
  | 'detector_fingerprint_mismatch'
  | 'detector_shape_mismatch'
  | 'detector_not_readable';

export class DetectorError extends Error {
  readonly name = 'DetectorError';
  constructor(
    readonly code: DetectorErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(path ? `${message} (detector ${path})` : message);
  }
}

export interface LoadedDetector {
  path: string;
  artifact: DetectorArtifact;
  /** What GenerationRequest.probes takes. */
  probe: LinearProbe;
  tau: number;
  /** sha256 of the artifact file. */
  sha256: string;
}

/** hidden_risk: the probe's logit through the logistic function. */
export function detectorScore(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

// --- calibration samples ------------------------------------------------------------------------------------

function parseModes(value: unknown, where: string): DetectorMode[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0 || !value.every((m) => m === 'image' || m === 'text')) {
    throw new DetectorError('detector_malformed', `${where}: "modes" must be a non-empty list of "image" / "text"`);
  }
  return [...new Set(value as DetectorMode[])];
}

/** `id -> modes` from an evaluation set (FactorySafe's eval.jsonl beside instructions.jsonl carries the modes). */
export function readModesFile(path: string): Map<string, DetectorMode[]> {
  const modes = new Map<string, DetectorMode[]>();
  readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .forEach((line, i) => {
      if (!line.trim()) return;
      const raw = JSON.parse(line) as { id?: unknown; modes?: unknown };
      const m = parseModes(raw.modes, `${path}:${i + 1}`);
      if (typeof raw.id === 'string' && m) modes.set(raw.id, m);
    });
  return modes;
}

/**
 * Calibration items from instructions-style JSONL ({id?, prompt, image?, label: safe|unsafe, modes?}). Modes: the
 * line's own, else `modesById` (the evaluation set's), else harmful items in both modes (the positive class is the
 * harmful request with and without its image) and benign items with their image only (a question about "this
 * machine" means nothing without the photo).
 */
export function parseDetectorItems(text: string, source = 'samples', modesById?: ReadonlyMap<string, DetectorMode[]>): DetectorItem[] {
  const items: DetectorItem[] = [];
  for (const { raw, where, index } of readSampleLines(text, source, (m) => new DetectorError('detector_malformed', m))) {
    const id = typeof raw.id === 'string' ? raw.id : `${source}:${index + 1}`;
    const image = raw.image;
    const fallback: DetectorMode[] = raw.label === 'unsafe' ? ['image', 'text'] : ['image'];
    let modes = parseModes(raw.modes, where) ?? modesById?.get(id) ?? fallback;
    if (!image) modes = ['text'];
    items.push({ id, prompt: raw.prompt, image, label: raw.label, modes });
  }
  if (items.length === 0) throw new DetectorError('detector_malformed', `${source}: no samples`);
  return items;
}

/** One tap request per item and mode, at the generation prompt (no response). */
export function buildDetectorSet(items: readonly DetectorItem[], readImage: ImageReader): DetectorSet {
  const set: DetectorSet = {
    requests: [],
    classes: new Uint8Array(0),
    modes: [],
    items: [],
    itemLabels: Uint8Array.from(items, (it) => (it.label === 'unsafe' ? 1 : 0)),
  };
  const classes: number[] = [];
  items.forEach((item, k) => {
    for (const mode of item.modes) {
      set.requests.push(mode === 'image' ? { prompt: item.prompt, image: readImage(item.image!) } : { prompt: item.prompt });
      classes.push(item.label === 'unsafe' ? 1 : 0);
      set.modes.push(mode);
      set.items.push(k);
    }
  });
  set.classes = Uint8Array.from(classes);
  return set;
}

/** Picks rows from a `limit` of items, round-robin over the labels so a quick fit still has both classes. */
export function limitItems(items: readonly DetectorItem[], limit: number): DetectorItem[] {
  const pos = items.filter((i) => i.label === 'unsafe');
  const neg = items.filter((i) => i.label === 'safe');
  const out: DetectorItem[] = [];
  for (let k = 0; out.length < limit && (k < pos.length || k < neg.length); k++) {
    if (k < pos.length) out.push(pos[k]);
    if (k < neg.length && out.length < limit) out.push(neg[k]);
  }
  return out;
}

// --- fitting --------------------------------------------------------------------------------------------------

export interface DetectorFitOptions {
  holdout?: number;
  seed?: number;
  batchSize?: number;
  targetFpr?: number;
  /** Folds of the out-of-fold scores tau is read on; 1: the refit probe's own (in-sample) scores. */
  thresholdFolds?: number;
  probe?: ProbeOptions;
  /** Recorded in the artifact. */
  samplesPath?: string;
  log?: (line: string) => void;
  createdAt?: string;
}

export interface DetectorFit {
  artifact: DetectorArtifact;
  /** The taps the detector was fitted on (tests check the probe against them). */
  frames: TapFrame[];
}

function layerRows(frames: readonly TapFrame[], layer: number, hidden: number): Float32Array[] {
  return frames.map((f) => f.layer.subarray(layer * hidden, (layer + 1) * hidden));
}

/** Per-dimension mean and std of `rows` (std 1 where a dimension is constant, so it stays out of the fit). */
function moments(rows: readonly Float32Array[], dim: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(dim);
  const sq = new Float64Array(dim);
  for (const r of rows) for (let j = 0; j < dim; j++) mean[j] += r[j];
  for (let j = 0; j < dim; j++) mean[j] /= rows.length;
  for (const r of rows) for (let j = 0; j < dim; j++) sq[j] += (r[j] - mean[j]) ** 2;
  const std = sq.map((s) => Math.sqrt(s / rows.length) || 1);
  return { mean, std };
}

/**
 * Logistic probe on standardised features, returned in the engine's form: center = the training mean, weights =
 * w / std (so `weights · (x - center) + bias` is the standardised probe's logit), rounded to float32 as the engine
 * holds them, so scores computed here are the ones the engine computes.
 */
function fitProbe(rows: readonly Float32Array[], labels: ArrayLike<number>, layer: number, hidden: number, options: ProbeOptions) {
  const { mean, std } = moments(rows, hidden);
  const standardised = rows.map((r) => Float64Array.from({ length: hidden }, (_, j) => (r[j] - mean[j]) / std[j]));
  const fitted = trainLogisticProbe(standardised, labels, options);
  const probe: LinearProbe = {
    layer,
    weights: Float32Array.from(fitted.weights, (w, j) => w / std[j]),
    bias: fitted.bias,
    center: Float32Array.from(mean),
  };
  return { probe, converged: fitted.converged, iterations: fitted.iterations };
}

/** Threshold halfway between an ROC point and the next lower score, so a score on the boundary is not a coin toss. */
function thresholdBelow(point: RocPoint, points: readonly RocPoint[]): number {
  const i = points.findIndex((p) => p.threshold === point.threshold);
  const lower = points[i + 1]?.threshold;
  if (!Number.isFinite(point.threshold)) return lower === undefined ? Infinity : lower + Math.max(1, Math.abs(lower)) * 1e-6;
  return lower === undefined ? point.threshold : (point.threshold + lower) / 2;
}

/** Items dealt to `k` folds, each label shuffled and dealt round-robin so every fold holds both classes. */
function itemFolds(itemLabels: Uint8Array, k: number, seed: number): number[] {
  const rand = seededRandom(seed + 1);
  const fold = new Array<number>(itemLabels.length).fill(0);
  for (const cls of [1, 0]) {
    const idx = [...itemLabels.keys()].filter((i) => itemLabels[i] === cls);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    idx.forEach((item, n) => (fold[item] = n % k));
  }
  return fold;
}

/** Fraction of class `cls` with z >= threshold. */
function rate(z: readonly number[], classes: ArrayLike<number>, cls: number, threshold: number): number {
  let n = 0;
  let hit = 0;
  for (let i = 0; i < z.length; i++) {
    if (classes[i] !== cls) continue;
    n++;
    if (z[i] >= threshold) hit++;
  }
  return n ? hit / n : NaN;
}

/** Fits the detector on frames already read (one per request of `set`, at the generation prompt). */
export function fitDetectorOnFrames(info: ModelInfo, set: DetectorSet, frames: readonly TapFrame[], options: DetectorFitOptions = {}): DetectorFit {
  const holdout = options.holdout ?? DETECTOR_DEFAULTS.holdout;
  const seed = options.seed ?? DETECTOR_DEFAULTS.seed;
  const targetFpr = options.targetFpr ?? DETECTOR_DEFAULTS.targetFpr;
  const probeOptions = { ...PROBE_DEFAULTS, ...options.probe };
  const log = options.log ?? (() => {});
  if (frames.length !== set.requests.length) throw new RangeError(`${frames.length} frames for ${set.requests.length} requests`);
  const { hidden, layers } = info;
  const classes = set.classes;
  if (!classes.some((c) => c) || classes.every((c) => c)) throw new DetectorError('detector_malformed', 'the detector needs harmful and benign samples');

  // Items, not requests, are split: the same prompt with and without its image must not sit on both sides.
  const itemSplit = stratifiedSplit(set.itemLabels, holdout, seed);
  const holdoutItems = new Set(itemSplit.holdout);
  const train = set.items.flatMap((item, i) => (holdoutItems.has(item) ? [] : [i]));
  const test = set.items.flatMap((item, i) => (holdoutItems.has(item) ? [i] : []));

  const reports: LayerReport[] = [];
  for (let layer = 0; layer < layers; layer++) {
    const rows = layerRows(frames, layer, hidden);
    const { probe } = fitProbe(
      train.map((i) => rows[i]),
      train.map((i) => classes[i]),
      layer,
      hidden,
      probeOptions,
    );
    const z = test.map((i) => readProbe(probe, frames[i].layer, hidden));
    const y = test.map((i) => classes[i]);
    const report = { layer, holdoutAuroc: auroc(z, y), holdoutTprAt1pctFpr: tprAtFpr(z, y, targetFpr).tpr, holdoutSeparation: classSeparation(z, y) };
    reports.push(report);
    log(
      `layer ${layer}: holdout AUROC ${report.holdoutAuroc.toFixed(4)}, TPR@${targetFpr * 100}%FPR ${report.holdoutTprAt1pctFpr.toFixed(3)}, separation ${report.holdoutSeparation.toFixed(2)}`,
    );
  }
  const best = [...reports].sort((a, b) => b.holdoutAuroc - a.holdoutAuroc || b.holdoutSeparation - a.holdoutSeparation || a.layer - b.layer)[0];

  // Refit on the whole calibration split at the chosen layer; tau is read on its scores.
  const rows = layerRows(frames, best.layer, hidden);
  const final = fitProbe(rows, classes, best.layer, hidden, probeOptions);
  const z = frames.map((f) => readProbe(final.probe, f.layer, hidden));
  const folds = options.thresholdFolds ?? DETECTOR_DEFAULTS.thresholdFolds;
  if (!(Number.isInteger(folds) && folds >= 1)) throw new RangeError(`thresholdFolds must be a positive integer, got ${folds}`);
  let thresholdScores = z;
  if (folds > 1) {
    const fold = itemFolds(set.itemLabels, folds, seed);
    thresholdScores = new Array<number>(z.length).fill(0);
    for (let f = 0; f < folds; f++) {
      const inFold = set.items.flatMap((item, i) => (fold[item] === f ? [i] : []));
      const rest = set.items.flatMap((item, i) => (fold[item] !== f ? [i] : []));
      const { probe } = fitProbe(
        rest.map((i) => rows[i]),
        rest.map((i) => classes[i]),
        best.layer,
        hidden,
        probeOptions,
      );
      for (const i of inFold) thresholdScores[i] = readProbe(probe, frames[i].layer, hidden);
    }
  }
  const points = rocPoints(thresholdScores, classes);
  const tauLogit = thresholdBelow(tprAtFpr(thresholdScores, classes, targetFpr), points);
  // What the shipped (refit) probe does at tau on the calibration split.
  const atTau = { tpr: rate(z, classes, 1, tauLogit), fpr: rate(z, classes, 0, tauLogit) };
  let balanced = points[0];
  for (const p of points) if (p.tpr - p.fpr > balanced.tpr - balanced.fpr) balanced = p;
  const balancedLogit = thresholdBelow(balanced, points);
  const count = (cls: number, mode: DetectorMode) => set.modes.filter((m, i) => m === mode && classes[i] === cls).length;

  const artifact: DetectorArtifact = {
    kind: DETECTOR_KIND,
    formatVersion: DETECTOR_FORMAT_VERSION,
    model: { name: info.name, fingerprint: info.fingerprint, layers, hidden },
    layer: best.layer,
    weights: Array.from(final.probe.weights),
    bias: final.probe.bias,
    center: Array.from(final.probe.center!),
    tau: detectorScore(tauLogit),
    tauLogit,
    targetFpr,
    balancedAccuracyThreshold: {
      tau: detectorScore(balancedLogit),
      tauLogit: balancedLogit,
      tpr: balanced.tpr,
      fpr: balanced.fpr,
      balancedAccuracy: (balanced.tpr + 1 - balanced.fpr) / 2,
    },
    fittedOn: {
      ...(options.samplesPath ? { samples: options.samplesPath } : {}),
      items: set.itemLabels.length,
      requests: set.requests.length,
      positives: { image: count(1, 'image'), text: count(1, 'text') },
      negatives: { image: count(0, 'image'), text: count(0, 'text') },
      holdout,
      seed,
      probe: probeOptions,
      standardised: true,
    },
    calibration: {
      layers: reports,
      holdoutAuroc: best.holdoutAuroc,
      holdoutTprAt1pctFpr: best.holdoutTprAt1pctFpr,
      thresholdScores: folds > 1 ? `out-of-fold (${folds} folds)` : 'in-sample',
      tprAt1pctFpr: atTau.tpr,
      fprAtTau: atTau.fpr,
      auroc: auroc(z, classes),
      converged: final.converged,
      iterations: final.iterations,
    },
    createdAt: options.createdAt ?? new Date().toISOString(),
  };
  log(
    `chosen layer ${best.layer}; tau ${artifact.tau.toPrecision(6)} (z ${tauLogit.toFixed(3)}): calibration TPR ${atTau.tpr.toFixed(3)} at FPR ${atTau.fpr.toFixed(4)}`,
  );
  return { artifact, frames: [...frames] };
}

/** Reads the set's taps through the runtime and fits the detector. */
export async function fitDetector(engine: TapReader, set: DetectorSet, options: DetectorFitOptions = {}): Promise<DetectorFit> {
  const info = engine.info();
  if (!info.revisable) throw new DetectorError('detector_not_readable', `${info.name}'s decoder has no tap outputs (modctl model prepare)`);
  const frames = await readTapsBatched(engine, set.requests, options.batchSize ?? DETECTOR_DEFAULTS.batchSize);
  return fitDetectorOnFrames(info, set, frames, options);
}

// --- the artifact ---------------------------------------------------------------------------------------------

/** Written under a temporary name and renamed, so a worker starting meanwhile never reads half a file. */
export function writeDetector(path: string, artifact: DetectorArtifact): void {
  mkdirSync(dirname(resolve(path)), { recursive: true });
  writeFileSync(`${path}.tmp`, `${JSON.stringify(artifact, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

function finiteArray(v: unknown, length: number): v is number[] {
  return Array.isArray(v) && v.length === length && v.every((x) => typeof x === 'number' && Number.isFinite(x));
}

/** Loads and checks an artifact; with `model`, refuses one fitted on another decoder (the taps would mean nothing). */
export function loadDetector(path: string, model?: Pick<ModelInfo, 'fingerprint' | 'layers' | 'hidden'>): LoadedDetector {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new DetectorError('detector_missing', `cannot read the detector: ${(err as Error).message}`, path);
  }
  let a: DetectorArtifact;
  try {
    a = JSON.parse(text);
  } catch (err) {
    throw new DetectorError('detector_malformed', `not JSON (${(err as Error).message})`, path);
  }
  if (a?.kind !== DETECTOR_KIND) throw new DetectorError('detector_malformed', `kind must be "${DETECTOR_KIND}"`, path);
  if (a.formatVersion !== DETECTOR_FORMAT_VERSION)
    throw new DetectorError('detector_unsupported_version', `format version ${a.formatVersion} is not ${DETECTOR_FORMAT_VERSION}`, path);
  const hidden = a.model?.hidden;
  if (!(Number.isInteger(hidden) && hidden > 0 && Number.isInteger(a.model.layers) && typeof a.model.fingerprint === 'string')) {
    throw new DetectorError('detector_malformed', 'model must carry name, fingerprint, layers and hidden', path);
  }
  if (!(Number.isInteger(a.layer) && a.layer >= 0 && a.layer < a.model.layers))
    throw new DetectorError('detector_malformed', `layer ${a.layer} is outside the model`, path);
  if (!finiteArray(a.weights, hidden) || !finiteArray(a.center, hidden))
    throw new DetectorError('detector_malformed', `weights and center must be ${hidden} finite numbers`, path);
  if (!Number.isFinite(a.bias) || !(a.tau >= 0 && a.tau <= 1)) throw new DetectorError('detector_malformed', 'bias must be finite and tau in [0, 1]', path);
  if (model) {
    if (model.fingerprint !== a.model.fingerprint) {
      throw new DetectorError(
        'detector_fingerprint_mismatch',
        `fitted on decoder ${a.model.fingerprint.slice(0, 12)}… (${a.model.name}), the engine runs ${model.fingerprint.slice(0, 12)}…: refit it (modctl detector fit)`,
        path,
      );
    }
    if (model.hidden !== hidden || model.layers !== a.model.layers) {
      throw new DetectorError(
        'detector_shape_mismatch',
        `fitted for ${a.model.layers} layers x ${hidden}, the model has ${model.layers} x ${model.hidden}`,
        path,
      );
    }
  }
  return {
    path,
    artifact: a,
    probe: { layer: a.layer, weights: Float32Array.from(a.weights), bias: a.bias, center: Float32Array.from(a.center) },
    tau: a.tau,
    sha256: createHash('sha256').update(text).digest('hex'),
  };
}

/** hidden_risk of one tap frame read at the generation prompt (what the engine's `probes` returns, through sigmoid). */
export function scoreFrame(detector: Pick<LoadedDetector, 'probe'>, frame: TapFrame, hidden: number): number {
  return detectorScore(readProbe(detector.probe, frame.layer, hidden));
}

export type DetectorResolution = { detector: LoadedDetector; reason: string } | { detector: null; reason: string };

/**
 * The worker's detector from DETECTOR_FILE. Set: it must load and match the engine (else the worker refuses to
 * start, as with revision artifacts). Unset: the default file when it exists, was fitted on this decoder and the
 * decoder has taps; otherwise off, with the reason. 'none': off.
 */
export function resolveDetector(setting: string | undefined, model: ModelInfo, cwd = process.cwd()): DetectorResolution {
  if (setting === 'none') return { detector: null, reason: `${DETECTOR_ENV}=none: hidden-state detector off` };
  if (setting !== undefined) {
    if (!model.revisable) throw new DetectorError('detector_not_readable', `${model.name}'s decoder has no tap outputs, the detector cannot be read`, setting);
    const detector = loadDetector(resolve(cwd, setting), model);
    return { detector, reason: `hidden-state detector ${setting} (layer ${detector.artifact.layer}, tau ${detector.tau.toPrecision(4)})` };
  }
  const path = resolve(cwd, DEFAULT_DETECTOR_FILE);
  if (!existsSync(path)) return { detector: null, reason: `hidden-state detector off: ${DEFAULT_DETECTOR_FILE} not found and ${DETECTOR_ENV} unset` };
  if (!model.revisable) return { detector: null, reason: `hidden-state detector off: ${model.name}'s decoder has no tap outputs` };
  try {
    const detector = loadDetector(path, model);
    return { detector, reason: `hidden-state detector ${DEFAULT_DETECTOR_FILE} (layer ${detector.artifact.layer}, tau ${detector.tau.toPrecision(4)})` };
  } catch (err) {
    if (err instanceof DetectorError && (err.code === 'detector_fingerprint_mismatch' || err.code === 'detector_shape_mismatch')) {
      return { detector: null, reason: `hidden-state detector off: ${DEFAULT_DETECTOR_FILE} was fitted on another model (${err.message})` };
    }
    throw err;
  }
}
