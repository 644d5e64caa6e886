/**
 * modctl calibrate --pack <dir> --samples <jsonl> --level layer|head --method mms|pwd
 *                  --strategy multi-instruction|text-response|multi-response|image-shift --out <artifact>
 *                  [--top-k K] [--causal] [--causal-alpha A] [--causal-pool P] [--holdout 0.25] [--seed S]
 *                  [--select probe|generation --eval <eval.jsonl> [--select-alpha 1.5] [--select-limit N] [--select-pool P]]
 *                  [--batch B] [--thread inline|worker] [--force]
 * Builds contrastive tap requests from the samples, reads taps through the runtime, computes directions, sigma and
 * the ranking, writes a revision artifact and prints its summary (with the sha256 a profile must pin).
 * `--select generation` (issue 12 item 2) ranks the units by judged generation on the calibration eval items
 * (libs/revision/src/causal-selection.ts): the artifact's ranking and selection then come from it, and both that
 * ranking and the probe-accuracy one are printed.
 */
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { evalCases, readEvalSet, type EvalCase } from '@libs/evaluation';
import {
  applyGenerationSelection,
  buildContrastSet,
  calibrate,
  fileImageReader,
  formatCalibrationSummary,
  formatGenerationSelection,
  MANIFEST_FILE,
  rankUnits,
  readSamplesFile,
  SAMPLE_STRATEGIES,
  SampleError,
  selectByGeneration,
  writeArtifact,
  type DirectionMethod,
  type RevisionLevel,
  type SampleStrategy,
} from '@libs/revision';
import { openVlmEngine } from '@libs/vlm';

export const summary = 'calibrate revision vectors (MMS/PWD, layer/head) from contrastive samples into an artifact';

const USAGE = `usage: modctl calibrate --pack <dir> --samples <jsonl> --level layer|head --method mms|pwd
                      --strategy ${SAMPLE_STRATEGIES.join('|')} --out <artifact-dir>
                      [--top-k K] [--causal] [--causal-alpha 15] [--causal-pool 0] [--holdout 0.25] [--seed 0]
                      [--select probe|generation --eval <eval.jsonl> [--select-alpha 1.5] [--select-limit N] [--select-pool 0]]
                      [--batch 8] [--thread inline|worker] [--force]`;

/** How the artifact's units are chosen: held-out probe accuracy (or `--causal`), or judged generation (issue 12 item 2). */
type SelectMode = 'probe' | 'generation';

class UsageError extends Error {}

function choice<T extends string>(value: string | undefined, name: string, allowed: readonly T[]): T {
  if (value === undefined) throw new UsageError(`--${name} is required`);
  if (!allowed.includes(value as T)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}`);
  return value as T;
}

function number(value: string | undefined, name: string, check: (n: number) => boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!check(n)) throw new UsageError(`--${name}: invalid value ${JSON.stringify(value)}`);
  return n;
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      pack: { type: 'string' },
      samples: { type: 'string' },
      level: { type: 'string' },
      method: { type: 'string' },
      strategy: { type: 'string' },
      out: { type: 'string' },
      'top-k': { type: 'string' },
      causal: { type: 'boolean', default: false },
      'causal-alpha': { type: 'string' },
      'causal-pool': { type: 'string' },
      holdout: { type: 'string' },
      seed: { type: 'string' },
      select: { type: 'string', default: 'probe' },
      eval: { type: 'string' },
      'select-alpha': { type: 'string' },
      'select-limit': { type: 'string' },
      'select-pool': { type: 'string' },
      batch: { type: 'string' },
      thread: { type: 'string', default: 'inline' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  for (const req of ['pack', 'samples', 'out'] as const) if (!values[req]) throw new UsageError(`--${req} is required`);
  const int = (n: number) => Number.isInteger(n) && n >= 0;
  const select = choice<SelectMode>(values.select, 'select', ['probe', 'generation']);
  if (select === 'generation' && !values.eval) throw new UsageError("--select generation needs --eval <eval.jsonl> (the calibration split's eval items)");
  if (select !== 'generation') {
    for (const flag of ['eval', 'select-alpha', 'select-limit', 'select-pool'] as const)
      if (values[flag] !== undefined) throw new UsageError(`--${flag} is only used with --select generation`);
  }
  return {
    pack: resolve(values.pack!),
    samples: resolve(values.samples!),
    out: resolve(values.out!),
    level: choice<RevisionLevel>(values.level, 'level', ['layer', 'head']),
    method: choice<DirectionMethod>(values.method, 'method', ['mms', 'pwd']),
    strategy: choice<SampleStrategy>(values.strategy, 'strategy', SAMPLE_STRATEGIES),
    topK: number(values['top-k'], 'top-k', (n) => int(n) && n >= 1),
    causal: values.causal!,
    causalAlpha: number(values['causal-alpha'], 'causal-alpha', Number.isFinite),
    causalPool: number(values['causal-pool'], 'causal-pool', int),
    holdout: number(values.holdout, 'holdout', (n) => n > 0 && n < 1),
    seed: number(values.seed, 'seed', int),
    select,
    evalSet: values.eval ? resolve(values.eval) : undefined,
    selectAlpha: number(values['select-alpha'], 'select-alpha', Number.isFinite),
    selectLimit: number(values['select-limit'], 'select-limit', (n) => int(n) && n >= 1),
    selectPool: number(values['select-pool'], 'select-pool', int),
    batchSize: number(values.batch, 'batch', (n) => int(n) && n >= 1),
    thread: choice<'inline' | 'worker'>(values.thread, 'thread', ['inline', 'worker']),
    force: values.force!,
  };
}

export async function run(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (!args) {
    console.log(USAGE);
    return 0;
  }
  if (existsSync(join(args.out, MANIFEST_FILE)) && !args.force) {
    console.error(`${args.out} already holds an artifact; pass --force to replace it (profiles pinning its sha256 will then refuse it)`);
    return 1;
  }
  let contrast;
  let cases: EvalCase[] | undefined;
  try {
    const { samples, baseDir } = readSamplesFile(args.samples);
    contrast = buildContrastSet(samples, args.strategy, fileImageReader(baseDir));
  } catch (err) {
    if (err instanceof SampleError || (err as NodeJS.ErrnoException).code === 'ENOENT') {
      console.error(`calibrate: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  }
  if (args.evalSet) {
    // Read before the model is opened, so a bad eval file fails fast.
    try {
      cases = evalCases(readEvalSet(args.evalSet, args.selectLimit), args.evalSet);
    } catch (err) {
      console.error(`calibrate: --eval ${args.evalSet}: ${(err as Error).message}`);
      return 1;
    }
  }
  const engine = await openVlmEngine({ packDir: args.pack, thread: args.thread });
  try {
    const calibrated = await calibrate(engine, contrast, {
      level: args.level,
      method: args.method,
      topK: args.topK,
      causal: args.causal,
      causalAlpha: args.causalAlpha,
      causalPool: args.causalPool,
      holdout: args.holdout,
      seed: args.seed,
      batchSize: args.batchSize,
      log: (line) => console.error(line),
    });
    let result = calibrated;
    let selectionTable: string | undefined;
    if (args.select === 'generation') {
      const selection = await selectByGeneration(engine, calibrated.ranking, args.level, cases!, {
        alpha: args.selectAlpha,
        pool: args.selectPool,
        log: (line) => console.error(line),
      });
      result = applyGenerationSelection(calibrated, selection, relative(process.cwd(), args.evalSet!));
      selectionTable = formatGenerationSelection(selection, rankUnits(calibrated.ranking, 'probe-accuracy'));
    }
    const written = writeArtifact(args.out, result.draft, result.directions);
    console.log(formatCalibrationSummary(result, written.artifactSha256, args.out));
    if (selectionTable) console.log(selectionTable);
    return 0;
  } finally {
    await engine.close();
  }
}
