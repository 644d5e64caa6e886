/**
 * Selection by causal effect measured by generation (issue 12 item 2). Probe accuracy ties at 1.0 on every layer of
 * factory-vlm and the teacher-forced causal pass scores the final residual stream, not the answer; neither finds the
 * unit that actually changes what the model says (on factory-vlm the image-shift vector works at the last layer
 * only: layers 0-2 are undone by later layers). So each unit is revised ALONE, at a fixed alpha, while the runtime
 * generates greedily on the calibration split's own eval items; the answers are judged by content (the bench's
 * judge, libs/evaluation) and the unit is scored by
 *
 *   score = (ASR_baseline - ASR_unit) / max(benignAcc_baseline - benignAcc_unit, minBenignLoss)
 *
 * i.e. ASR drop per unit of benign-accuracy loss. ASR is image+harmful ASR (the failure IAR targets); the benign
 * cases are every benign case of the set (with and without image). The revised vector is the one the artifact
 * stores: the all-samples direction times alpha * sigma, at the given positions, so the score is that of the
 * profile that would ship.
 */
import { judge, summarize, type EvalCase, type JudgedCase } from '@libs/evaluation';
import type { GenerationRequest, RevisionFeed, RevisionPositions, VlmEngine } from '@libs/vlm';
import { rerankCalibration, singleUnitFeed, type CalibrationResult } from './calibration';
import { unitKey, type RevisionLevel, type Unit } from './layout';
import { rankUnits, type UnitScore } from './selection';

export type GenerationEngine = Pick<VlmEngine, 'info' | 'generate'>;

export interface GenerationSelectionOptions {
  /**
   * Alpha of the single-unit revision (times the unit's sigma).
   * @defaultValue 1.5 — the alpha at which the image-shift vector at factory-vlm's last layer cut test ASR 85.4% -> 2.1% (issue 12)
   */
  alpha?: number;
  /** @defaultValue 'last' — the positions the working profile uses; 'generated' cannot change the first token (issue 12) */
  positions?: RevisionPositions;
  /** @defaultValue 48 — bench/safety.ts's `--max-new-tokens` default */
  maxNewTokens?: number;
  /** Rows per `engine.generate` call. @defaultValue 16 — bench/safety.ts's `--batch` default */
  batchSize?: number;
  /** Only the best `pool` units by probe accuracy are measured; 0 measures every unit. @defaultValue 0 */
  pool?: number;
  /** Floor of the benign-accuracy loss in the score's denominator. @defaultValue 0.01 (one point) */
  minBenignLoss?: number;
  /** Progress lines (stderr in modctl). */
  log?: (line: string) => void;
}

export const GENERATION_SELECTION_DEFAULTS = {
  alpha: 1.5,
  positions: 'last' as RevisionPositions,
  maxNewTokens: 48,
  batchSize: 16,
  pool: 0,
  minBenignLoss: 0.01,
};

/** Judged rates of one generation pass, as fractions. */
export interface GenerationRates {
  /** Image+harmful requests answered with harm. */
  asr: number;
  /** Benign requests answered with the expected content and no harm. */
  benignAccuracy: number;
  /** Benign requests refused. */
  overRefusal: number;
}

export interface UnitGenerationEffect extends GenerationRates {
  unit: Unit;
  /** Held-out probe accuracy (ITI), for comparison. */
  probeAccuracy: number;
  /** Teacher-forced causal effect (HSI proxy), when `--causal` measured it. */
  causalEffect?: number;
  /** ASR_baseline - ASR_unit. */
  asrDrop: number;
  /** benignAcc_baseline - benignAcc_unit (negative when the revision helps benign accuracy). */
  benignLoss: number;
  score: number;
}

export interface GenerationSelection {
  baseline: GenerationRates;
  /** Every measured unit, best score first. */
  units: UnitGenerationEffect[];
  cases: { imageHarmful: number; benign: number };
  alpha: number;
  positions: RevisionPositions;
  maxNewTokens: number;
  minBenignLoss: number;
  pool: number;
}

/** The cases the selection generates on: image+harmful requests and every benign case. */
export function selectionCases(cases: readonly EvalCase[]): EvalCase[] {
  return cases.filter((c) => (c.item.kind === 'harmful' ? c.mode === 'image' : true));
}

export function generationScore(asrDrop: number, benignLoss: number, minBenignLoss: number = GENERATION_SELECTION_DEFAULTS.minBenignLoss): number {
  return asrDrop / Math.max(benignLoss, minBenignLoss);
}

async function judgedRates(engine: GenerationEngine, cases: readonly EvalCase[], feed: RevisionFeed | undefined, maxNewTokens: number, batchSize: number) {
  const judged: JudgedCase[] = [];
  for (let i = 0; i < cases.length; i += batchSize) {
    const batch = cases.slice(i, i + batchSize);
    const requests: GenerationRequest[] = batch.map((c) => ({ prompt: c.item.prompt, image: c.image, maxNewTokens, revision: feed }));
    const answers = await engine.generate(requests);
    answers.forEach((a, k) => judged.push(judge(batch[k], a.text, { tokens: a.tokens.length, latencyMs: 0 })));
  }
  const m = summarize(judged);
  return { asr: m.imageHarmfulAsr.value, benignAccuracy: m.benignAccuracy.value, overRefusal: m.overRefusal.value };
}

/**
 * Measures every unit of `scores` (or the best `pool` by probe accuracy) by judged generation and sets its
 * `generationScore`. `scores` are calibration's unit scores (`CalibrationResult.ranking`) of `level`.
 */
export async function selectByGeneration(
  engine: GenerationEngine,
  scores: readonly UnitScore[],
  level: RevisionLevel,
  evalCases: readonly EvalCase[],
  options: GenerationSelectionOptions = {},
): Promise<GenerationSelection> {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as GenerationSelectionOptions;
  const o = { ...GENERATION_SELECTION_DEFAULTS, ...given };
  if (!Number.isFinite(o.alpha)) throw new RangeError(`selection alpha must be finite, got ${o.alpha}`);
  if (!(Number.isInteger(o.batchSize) && o.batchSize >= 1)) throw new RangeError(`batch size must be a positive integer, got ${o.batchSize}`);
  if (!(o.minBenignLoss > 0)) throw new RangeError(`minBenignLoss must be > 0, got ${o.minBenignLoss}`);
  const cases = selectionCases(evalCases);
  const imageHarmful = cases.filter((c) => c.item.kind === 'harmful').length;
  const benign = cases.length - imageHarmful;
  if (imageHarmful === 0 || benign === 0) {
    throw new RangeError(`generation selection needs image+harmful and benign cases (got ${imageHarmful} and ${benign})`);
  }
  const info = engine.info();
  const byProbe = rankUnits(scores, 'probe-accuracy');
  const measured = o.pool > 0 ? byProbe.slice(0, o.pool) : byProbe;
  o.log?.(
    `generation selection: baseline + ${measured.length} units x ${cases.length} cases (${imageHarmful} image+harmful, ${benign} benign), alpha ${o.alpha}`,
  );

  const baseline = await judgedRates(engine, cases, undefined, o.maxNewTokens, o.batchSize);
  o.log?.(`  baseline: ASR ${pct(baseline.asr)}, benign acc ${pct(baseline.benignAccuracy)}, over-refusal ${pct(baseline.overRefusal)}`);
  const units: UnitGenerationEffect[] = [];
  for (const s of measured) {
    const feed = singleUnitFeed(info, level, s.unit, s.direction, o.alpha * s.sigma, o.positions);
    const rates = await judgedRates(engine, cases, feed, o.maxNewTokens, o.batchSize);
    const asrDrop = baseline.asr - rates.asr;
    const benignLoss = baseline.benignAccuracy - rates.benignAccuracy;
    const score = generationScore(asrDrop, benignLoss, o.minBenignLoss);
    s.generation = { score, ...rates };
    units.push({
      unit: s.unit,
      probeAccuracy: s.probeAccuracy,
      ...(s.causalEffect !== undefined ? { causalEffect: s.causalEffect } : {}),
      ...rates,
      asrDrop,
      benignLoss,
      score,
    });
    o.log?.(`  ${unitKey(s.unit)}: ASR ${pct(rates.asr)}, benign acc ${pct(rates.benignAccuracy)}, score ${score.toFixed(2)}`);
  }
  const order = rankUnits(measured, 'generation-effect').map((s) => unitKey(s.unit));
  units.sort((a, b) => order.indexOf(unitKey(a.unit)) - order.indexOf(unitKey(b.unit)));
  return {
    baseline,
    units,
    cases: { imageHarmful, benign },
    alpha: o.alpha,
    positions: o.positions,
    maxNewTokens: o.maxNewTokens,
    minBenignLoss: o.minBenignLoss,
    pool: o.pool,
  };
}

/**
 * The calibration re-ranked by the generation score: the artifact's selection (its top-K) and ranking come from
 * the judged generation, and its manifest records how it was measured (`calibration.generationSelection`).
 * Units the selection did not measure (outside `pool`) rank after every measured one.
 */
export function applyGenerationSelection(result: CalibrationResult, selection: GenerationSelection, evalSet?: string): CalibrationResult {
  return rerankCalibration(result, 'generation-effect', {
    generationSelection: {
      alpha: selection.alpha,
      positions: selection.positions,
      maxNewTokens: selection.maxNewTokens,
      minBenignLoss: selection.minBenignLoss,
      pool: selection.pool,
      cases: selection.cases,
      baseline: selection.baseline,
      ...(evalSet !== undefined ? { evalSet } : {}),
    },
  });
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/** The per-unit table: both rankings side by side (generation rank = row order, probe rank in its column). */
export function formatGenerationSelection(selection: GenerationSelection, probeRanking: readonly UnitScore[]): string {
  const probeRank = new Map(probeRanking.map((s, i) => [unitKey(s.unit), i + 1]));
  const b = selection.baseline;
  const lines = [
    `  generation-judged selection: alpha ${selection.alpha}, positions ${selection.positions}, ${selection.maxNewTokens} new tokens, ` +
      `${selection.cases.imageHarmful} image+harmful and ${selection.cases.benign} benign cases; score = ASR drop / max(benign-accuracy loss, ${selection.minBenignLoss})`,
    `    baseline (no revision): ASR ${pct(b.asr)}  benign acc ${pct(b.benignAccuracy)}  over-refusal ${pct(b.overRefusal)}`,
    `    rank  unit      probe acc  probe rank  teacher-forced  ASR      benign acc  over-refusal  score`,
    ...selection.units.map((u, i) => {
      const tf = u.causalEffect !== undefined ? u.causalEffect.toFixed(4) : '-';
      return (
        `    ${String(i + 1).padEnd(4)}  ${unitKey(u.unit).padEnd(8)}  ${u.probeAccuracy.toFixed(3).padEnd(9)}  ${String(probeRank.get(unitKey(u.unit)) ?? '-').padEnd(10)}  ` +
        `${tf.padEnd(14)}  ${pct(u.asr).padEnd(7)}  ${pct(u.benignAccuracy).padEnd(10)}  ${pct(u.overRefusal).padEnd(12)}  ${u.score.toFixed(2)}`
      );
    }),
    `    probe-accuracy ranking: ${probeRanking.map((s) => unitKey(s.unit)).join(', ')}`,
    `    generation ranking:     ${selection.units.map((u) => unitKey(u.unit)).join(', ')}`,
  ];
  return lines.join('\n');
}
