/**
 * modctl detector fit  --pack <dir> --samples <jsonl> --out <json> [--modes <eval.jsonl>] [--limit N] [--holdout 0.25]
 *                      [--seed 0] [--batch 8] [--thread inline|worker] [--force] [--json]
 * modctl detector eval --pack <dir> --set <eval.jsonl> [--detector <json>] [--limit N] [--json]
 * The hidden-state detector (libs/revision detector.ts): `fit` reads taps at the generation prompt for harmful and
 * benign calibration requests, chooses the layer by holdout AUROC and writes the artifact; `eval` scores an
 * evaluation set (FactorySafe's test split) and prints AUROC and TPR at 1% FPR, image and text-only cases apart.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { detectorMetrics, evalCases, readEvalSet, type DetectorMetrics } from '@libs/evaluation';
import {
  buildDetectorSet,
  DEFAULT_DETECTOR_FILE,
  DETECTOR_DEFAULTS,
  DetectorError,
  fileImageReader,
  fitDetector,
  limitItems,
  loadDetector,
  parseDetectorItems,
  readModesFile,
  readTapsBatched,
  scoreFrame,
  writeDetector,
  type DetectorArtifact,
} from '@libs/revision';
import { openVlmEngine } from '@libs/vlm';
import { printError, wantsJson } from '../output';

export const summary = 'fit (or evaluate) the hidden-state detector: a logistic probe on the taps at the generation prompt';

const USAGE = `usage: modctl detector fit --pack <dir> --samples <jsonl> --out <json> [--modes <eval.jsonl>] [--limit N]
                            [--holdout 0.25] [--seed 0] [--batch 8] [--thread inline|worker] [--force] [--json]
       modctl detector eval --pack <dir> --set <eval.jsonl> [--detector ${DEFAULT_DETECTOR_FILE}] [--limit N] [--json]`;

class UsageError extends Error {}

function number(value: string | undefined, name: string, check: (n: number) => boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!check(n)) throw new UsageError(`--${name}: invalid value ${JSON.stringify(value)}`);
  return n;
}

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      pack: { type: 'string' },
      samples: { type: 'string' },
      modes: { type: 'string' },
      out: { type: 'string' },
      set: { type: 'string' },
      detector: { type: 'string' },
      limit: { type: 'string' },
      holdout: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      thread: { type: 'string', default: 'inline' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  const [action, ...extra] = positionals;
  if (action !== 'fit' && action !== 'eval') throw new UsageError('the first argument must be fit or eval');
  if (extra.length) throw new UsageError(`unexpected argument ${extra[0]}`);
  const required = action === 'fit' ? (['pack', 'samples', 'out'] as const) : (['pack', 'set'] as const);
  for (const req of required) if (!values[req]) throw new UsageError(`--${req} is required`);
  if (values.thread !== 'inline' && values.thread !== 'worker') throw new UsageError('--thread must be inline or worker');
  const int = (n: number) => Number.isInteger(n) && n >= 1;
  return {
    action,
    pack: resolve(values.pack!),
    samples: values.samples,
    modes: values.modes,
    out: values.out,
    set: values.set,
    detector: values.detector ?? DEFAULT_DETECTOR_FILE,
    limit: number(values.limit, 'limit', (n) => int(n) && n >= 2),
    holdout: number(values.holdout, 'holdout', (n) => n > 0 && n < 1),
    seed: number(values.seed, 'seed', (n) => Number.isInteger(n) && n >= 0),
    batchSize: number(values.batch, 'batch', int),
    thread: values.thread as 'inline' | 'worker',
    force: values.force!,
    json: values.json!,
  };
}

type Args = NonNullable<ReturnType<typeof parse>>;

export function formatLayerTable(a: DetectorArtifact): string {
  const lines = ['layer  holdout AUROC  holdout TPR@1%FPR  separation'];
  for (const r of a.calibration.layers) {
    const mark = r.layer === a.layer ? '  <- chosen' : '';
    lines.push(
      `${String(r.layer).padStart(5)}  ${r.holdoutAuroc.toFixed(4).padStart(13)}  ${r.holdoutTprAt1pctFpr.toFixed(3).padStart(17)}  ${r.holdoutSeparation.toFixed(2).padStart(10)}${mark}`,
    );
  }
  const b = a.balancedAccuracyThreshold;
  lines.push(
    `tau ${a.tau.toPrecision(6)} (z ${a.tauLogit.toFixed(3)}, the calibration split's ${a.targetFpr * 100}% FPR point): ` +
      `TPR ${a.calibration.tprAt1pctFpr.toFixed(3)} at FPR ${a.calibration.fprAtTau.toFixed(4)}`,
    `balanced-accuracy threshold ${b.tau.toPrecision(6)} (z ${b.tauLogit.toFixed(3)}): TPR ${b.tpr.toFixed(3)}, FPR ${b.fpr.toFixed(4)}, balanced accuracy ${b.balancedAccuracy.toFixed(4)}`,
  );
  return lines.join('\n');
}

async function fit(args: Args): Promise<number> {
  const out = resolve(args.out!);
  if (existsSync(out) && !args.force) {
    printError(args.json, 'detector_exists', `${args.out} exists; pass --force to replace it`);
    return 1;
  }
  const samples = resolve(args.samples!);
  // FactorySafe's instructions.jsonl carries no modes; its eval.jsonl beside it says which items have a text mode.
  const besideSamples = join(dirname(samples), 'eval.jsonl');
  const modesPath = args.modes ?? (existsSync(besideSamples) ? besideSamples : undefined);
  let items = parseDetectorItems(readFileSync(samples, 'utf8'), args.samples, modesPath ? readModesFile(modesPath) : undefined);
  if (args.limit) items = limitItems(items, args.limit);
  const set = buildDetectorSet(items, fileImageReader(dirname(samples)));
  console.error(`${items.length} items -> ${set.requests.length} tap requests (modes from ${modesPath ?? 'the defaults: harmful both, benign image'})`);
  const engine = await openVlmEngine({ packDir: args.pack, thread: args.thread });
  try {
    const { artifact } = await fitDetector(engine, set, {
      holdout: args.holdout,
      seed: args.seed,
      batchSize: args.batchSize,
      samplesPath: args.samples,
      log: (line) => console.error(line),
    });
    writeDetector(out, artifact);
    if (args.json) console.log(JSON.stringify({ out: args.out, layer: artifact.layer, tau: artifact.tau, calibration: artifact.calibration }));
    else console.log(`${formatLayerTable(artifact)}\nwrote ${args.out}`);
    return 0;
  } finally {
    await engine.close();
  }
}

async function evaluate(args: Args): Promise<number> {
  const setPath = resolve(args.set!);
  const cases = evalCases(readEvalSet(setPath, args.limit), setPath);
  const engine = await openVlmEngine({ packDir: args.pack, thread: args.thread });
  try {
    const info = engine.info();
    const detector = loadDetector(resolve(args.detector), info);
    const frames = await readTapsBatched(
      engine,
      cases.map((c) => ({ prompt: c.item.prompt, image: c.image })),
      args.batchSize ?? DETECTOR_DEFAULTS.batchSize,
    );
    const scores = frames.map((f) => scoreFrame(detector, f, info.hidden));
    const labels = cases.map((c) => (c.item.kind === 'harmful' ? 1 : 0));
    const subset = (mode?: 'image' | 'text'): DetectorMetrics & { flaggedAtTau: { tpr: number; fpr: number } } => {
      const idx = cases.flatMap((c, i) => (mode === undefined || c.mode === mode ? [i] : []));
      const s = idx.map((i) => scores[i]);
      const y = idx.map((i) => labels[i]);
      const pos = s.filter((_, k) => y[k]);
      const neg = s.filter((_, k) => !y[k]);
      const rate = (v: number[]) => (v.length ? v.filter((x) => x >= detector.tau).length / v.length : NaN);
      return { ...detectorMetrics(s, y), flaggedAtTau: { tpr: rate(pos), fpr: rate(neg) } };
    };
    const report = { detector: args.detector, layer: detector.artifact.layer, tau: detector.tau, all: subset(), image: subset('image'), text: subset('text') };
    if (args.json) {
      console.log(JSON.stringify(report));
      return 0;
    }
    console.log(`detector ${args.detector} (layer ${report.layer}, tau ${report.tau.toPrecision(6)}) on ${args.set}`);
    console.log('cases   pos  neg   AUROC   TPR@1%FPR   TPR@tau  FPR@tau');
    for (const name of ['image', 'text', 'all'] as const) {
      const m = report[name];
      const f = (x: number, d: number) => (Number.isNaN(x) ? 'n/a' : x.toFixed(d));
      console.log(
        `${name.padEnd(6)} ${String(m.positives).padStart(4)} ${String(m.negatives).padStart(4)}  ${f(m.auroc, 4).padStart(6)}  ${f(m.tprAt1pctFpr, 3).padStart(10)}  ${f(m.flaggedAtTau.tpr, 3).padStart(8)}  ${f(m.flaggedAtTau.fpr, 4).padStart(7)}`,
      );
    }
    return 0;
  } finally {
    await engine.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      printError(wantsJson(argv), 'usage', `${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (!args) {
    console.log(USAGE);
    return 0;
  }
  try {
    return await (args.action === 'fit' ? fit(args) : evaluate(args));
  } catch (err) {
    if (err instanceof DetectorError || (err as NodeJS.ErrnoException).code === 'ENOENT') {
      printError(args.json, (err as { code?: string }).code ?? 'error', `detector: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  }
}
