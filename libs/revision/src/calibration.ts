/**
 * Calibration: contrastive samples -> taps (through the runtime) -> per-unit directions, sigma and ranking ->
 * an artifact draft. The runtime is only touched through `readTaps`, so this runs against a fake engine in tests.
 */
import type { ModelInfo, RevisionFeed, RevisionPositions, TapFrame, TapRequest, VlmEngine } from '@libs/vlm';
import type { ArtifactDraft, SelectedUnit } from './artifact';
import { dot, massMeanShift, projectionStd } from './directions';
import { allUnits, denseLength, frameVector, unitKey, unitOffset, unitRows, type ModelShape, type RevisionLevel, type Unit } from './layout';
import { PROBE_DEFAULTS, type ProbeOptions } from './probe';
import type { ContrastSet } from './sample-strategies';
import {
  byClass,
  rankUnits,
  scoreUnit,
  selectTopK,
  stratifiedSplit,
  type DirectionMethod,
  type HoldoutSplit,
  type RankingCriterion,
  type UnitScore,
} from './selection';

export type TapReader = Pick<VlmEngine, 'info' | 'readTaps'>;

export interface CalibrationOptions {
  level: RevisionLevel;
  method: DirectionMethod;
  /** Units kept. Default: 4 heads (HSI's released demo) or 1 layer (CAA steers one layer). */
  topK?: number;
  /** Rank by single-unit causal effect (HSI) instead of held-out probe accuracy (ITI). */
  causal?: boolean;
  /** Alpha of the single-unit revision in the causal pass. Default 15 (ITI's script default). */
  causalAlpha?: number;
  /** Positions revised in the causal pass. Default 'all': teacher forcing has no decode steps, see docs. */
  causalPositions?: RevisionPositions;
  /** Only the best `causalPool` units by probe accuracy are measured causally (0 = all). Default 0. */
  causalPool?: number;
  /** Holdout fraction for probe accuracy and the causal pass. Default 0.25. */
  holdout?: number;
  seed?: number;
  /** Tap requests per readTaps call. Default 8. */
  batchSize?: number;
  probe?: ProbeOptions;
  /** Progress lines (stderr in modctl). */
  log?: (line: string) => void;
}

export const CALIBRATION_DEFAULTS = {
  topKHead: 4,
  topKLayer: 1,
  causalAlpha: 15,
  causalPositions: 'all' as RevisionPositions,
  causalPool: 0,
  holdout: 0.25,
  seed: 0,
  batchSize: 8,
};

export interface CalibrationResult {
  draft: ArtifactDraft;
  /** Unit directions, dense layout, zeros where not selected. */
  directions: Float32Array;
  /** Every unit, best first. */
  ranking: UnitScore[];
  selected: UnitScore[];
  split: HoldoutSplit;
}

export async function readTapsBatched(engine: Pick<VlmEngine, 'readTaps'>, requests: readonly TapRequest[], batchSize: number): Promise<TapFrame[]> {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const frames: TapFrame[] = [];
  for (let i = 0; i < requests.length; i += batchSize) {
    frames.push(...(await engine.readTaps(requests.slice(i, i + batchSize))));
  }
  if (frames.length !== requests.length) throw new Error(`readTaps returned ${frames.length} frames for ${requests.length} requests`);
  return frames;
}

/** A feed that revises one unit only, with alpha * sigma * direction. */
export function singleUnitFeed(
  info: ModelInfo,
  level: RevisionLevel,
  unit: Unit,
  direction: ArrayLike<number>,
  scale: number,
  positions: RevisionPositions,
): RevisionFeed {
  const dense = new Float32Array(denseLength(info, level));
  const start = unitOffset(info, level, unit);
  for (let i = 0; i < direction.length; i++) dense[start + i] = scale * direction[i];
  return level === 'layer' ? { layer: dense, positions } : { head: dense, positions };
}

/**
 * HSI-style causal pass. Behaviour score: the mean projection of the FINAL layer's residual stream (last token)
 * onto the final layer's MMS direction (train split), over the held-out negative (unsafe-behaviour) samples, in
 * units of that projection's std. A unit's effect is how far revising it alone moves that score toward the
 * safe class. It stands in for HSI's "how often does the answer flip", which needs a judged generation per
 * head; the final residual stream is what the LM head reads, so it is the cheapest proxy of the output.
 */
async function measureCausalEffects(
  engine: TapReader,
  contrast: ContrastSet,
  frames: readonly TapFrame[],
  split: HoldoutSplit,
  candidates: UnitScore[],
  options: CalibrationOptions & typeof CALIBRATION_DEFAULTS,
): Promise<void> {
  const info = engine.info();
  const final: Unit = { layer: info.layers - 1 };
  const finalRows = unitRows(frames, info, 'layer', final);
  const train = byClass(finalRows, contrast.classes, split.train);
  const behaviour = massMeanShift(train.positive, train.negative);
  const behaviourSigma = projectionStd(finalRows, behaviour) || 1;
  let targets = split.holdout.filter((i) => contrast.classes[i] === 0);
  if (targets.length === 0) targets = split.holdout;
  const score = (fs: readonly TapFrame[]) =>
    fs.reduce((acc, f) => acc + dot(unitRows([f], info, 'layer', final)[0], behaviour), 0) / fs.length / behaviourSigma;
  const baseline = score(targets.map((i) => frames[i]));

  options.log?.(`causal pass: ${candidates.length} units x ${targets.length} held-out samples`);
  // Units go through in groups of about one batch, so only a group's dense feeds are alive at a time (a real
  // model's head-level feed is layers * heads * headDim floats per unit).
  const unitsPerGroup = Math.max(1, Math.floor(options.batchSize / targets.length));
  for (let g = 0; g < candidates.length; g += unitsPerGroup) {
    const group = candidates.slice(g, g + unitsPerGroup);
    const requests: TapRequest[] = [];
    for (const c of group) {
      const sigma = projectionStd(unitRows(frames, info, options.level, c.unit), c.trainDirection);
      const revision = singleUnitFeed(info, options.level, c.unit, c.trainDirection, options.causalAlpha * sigma, options.causalPositions);
      for (const i of targets) requests.push({ ...contrast.requests[i], revision });
    }
    const revised = await readTapsBatched(engine, requests, options.batchSize);
    group.forEach((c, k) => {
      c.causalEffect = score(revised.slice(k * targets.length, (k + 1) * targets.length)) - baseline;
    });
  }
}

export async function calibrate(engine: TapReader, contrast: ContrastSet, options: CalibrationOptions): Promise<CalibrationResult> {
  // Undefined options (absent CLI flags) keep their defaults instead of overwriting them.
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as CalibrationOptions;
  const o = { ...CALIBRATION_DEFAULTS, ...given };
  const topK = given.topK ?? (o.level === 'head' ? o.topKHead : o.topKLayer);
  const info = engine.info();
  if (!info.revisable) throw new Error(`model ${info.name} has no tap outputs: run \`modctl model prepare\` on the pack first`);
  const probe = { ...PROBE_DEFAULTS, ...o.probe };

  o.log?.(`reading taps for ${contrast.requests.length} samples (batch ${o.batchSize})`);
  const frames = await readTapsBatched(engine, contrast.requests, o.batchSize);
  const expected = denseLength(info, o.level);
  for (const f of frames) {
    if (frameVector(f, o.level).length !== expected)
      throw new Error(`tap frame has ${frameVector(f, o.level).length} ${o.level} entries, expected ${expected}`);
  }
  const split = stratifiedSplit(contrast.classes, o.holdout, o.seed);
  const units = allUnits(info, o.level);
  const scores = units.map((u) => scoreUnit(u, unitRows(frames, info, o.level, u), contrast.classes, split, o.method, probe));

  if (o.causal) {
    const byProbe = rankUnits(scores, 'probe-accuracy');
    const pool = o.causalPool > 0 ? byProbe.slice(0, o.causalPool) : byProbe;
    await measureCausalEffects(engine, contrast, frames, split, pool, o);
  }
  const rankedBy = o.causal ? 'causal-effect' : 'probe-accuracy';
  const ranking = rankUnits(scores, rankedBy);
  const selected = selectTopK(ranking, Math.min(topK, ranking.length));

  const positives = contrast.classes.reduce((a, c) => a + c, 0);
  const draft: ArtifactDraft = {
    method: o.method,
    strategy: contrast.strategy,
    level: o.level,
    positiveClass: contrast.positiveClass,
    rankedBy,
    model: { name: info.name, fingerprint: info.fingerprint, layers: info.layers, hidden: info.hidden, heads: info.heads, headDim: info.headDim },
    selection: selectionEntries(selected),
    samples: { positive: positives, negative: contrast.classes.length - positives, train: split.train.length, holdout: split.holdout.length },
    calibration: {
      topK,
      holdout: o.holdout,
      seed: o.seed,
      probe,
      ...(o.causal ? { causalAlpha: o.causalAlpha, causalPositions: o.causalPositions, causalPool: o.causalPool } : {}),
    },
  };
  return { draft, directions: denseDirections(info, o.level, selected), ranking, selected, split };
}

/** The artifact's selection entries, rank = position in `selected`. */
function selectionEntries(selected: readonly UnitScore[]): SelectedUnit[] {
  return selected.map((s, i) => ({
    ...s.unit,
    sigma: s.sigma,
    probeAccuracy: s.probeAccuracy,
    ...(Number.isFinite(s.separation) ? { separation: s.separation } : {}),
    ...(s.causalEffect !== undefined ? { causalEffect: s.causalEffect } : {}),
    ...(s.generation !== undefined ? { generation: s.generation } : {}),
    rank: i + 1,
  }));
}

/** The selected units' directions in the dense layout, zeros elsewhere. */
function denseDirections(shape: ModelShape, level: RevisionLevel, selected: readonly UnitScore[]): Float32Array {
  const directions = new Float32Array(denseLength(shape, level));
  for (const s of selected) directions.set(s.direction, unitOffset(shape, level, s.unit));
  return directions;
}

/**
 * The same calibration re-ranked by another criterion (measured after `calibrate`, e.g. by judged generation): the
 * top-K of the new ranking become the selection and the artifact's directions; `calibration` is merged into the
 * draft's record of how the artifact was made.
 */
export function rerankCalibration(result: CalibrationResult, rankedBy: RankingCriterion, calibration: Record<string, unknown> = {}): CalibrationResult {
  const d = result.draft;
  const topK = typeof d.calibration.topK === 'number' ? d.calibration.topK : result.selected.length;
  const ranking = rankUnits(result.ranking, rankedBy);
  const selected = selectTopK(ranking, Math.min(topK, ranking.length));
  return {
    ...result,
    ranking,
    selected,
    directions: denseDirections(d.model, d.level, selected),
    draft: { ...d, rankedBy, selection: selectionEntries(selected), calibration: { ...d.calibration, ...calibration } },
  };
}

export function formatCalibrationSummary(result: CalibrationResult, artifactSha256?: string, out?: string): string {
  const d = result.draft;
  const lines = [
    `calibrated ${d.level}-level ${d.method.toUpperCase()} directions (${d.strategy}) on ${d.model.name}`,
    `  samples: ${d.samples.positive} positive (${d.positiveClass}), ${d.samples.negative} negative; train ${d.samples.train}, holdout ${d.samples.holdout}`,
    `  ranked by ${d.rankedBy}; top ${Math.min(result.ranking.length, 8)} of ${result.ranking.length}:`,
    ...result.ranking.slice(0, 8).map((s, i) => {
      const causal = s.causalEffect !== undefined ? `  causal ${s.causalEffect.toFixed(4)}` : '';
      const generation = s.generation !== undefined ? `  generation score ${s.generation.score.toFixed(2)}` : '';
      const mark = i < result.selected.length ? '*' : ' ';
      return `   ${mark} ${unitKey(s.unit).padEnd(8)} probe acc ${s.probeAccuracy.toFixed(3)}  separation ${s.separation.toFixed(2)}  sigma ${s.sigma.toPrecision(4)}${causal}${generation}`;
    }),
    `  selected: ${result.selected.map((s) => unitKey(s.unit)).join(', ')}`,
  ];
  if (out) lines.push(`  artifact: ${out}`);
  if (artifactSha256) lines.push(`  artifact sha256 (manifest): ${artifactSha256}`);
  lines.push(`  decoder fingerprint: ${d.model.fingerprint}`);
  return lines.join('\n');
}
