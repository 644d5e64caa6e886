/**
 * `modctl eta-calibrate --clip <pack> --guard <pack> --calibration <dir> [--out config/eta.json]`
 * Fits ETA's tau_pre and tau_post for the loaded evaluator models on a FactorySafe-format calibration split
 * (responses.jsonl with safe/unsafe answers, eval.jsonl with scene ground truth) and writes the thresholds file
 * the evaluator reads (ETA_CONFIG, default config/eta.json).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { EtaEvaluator, fitEtaThresholds, type CalibrationAnswer, type EtaThresholdsFile, type FittedEtaThresholds } from '@libs/safety';
import { openClassifier, openClip } from '@libs/vlm';

export const summary = 'fit ETA thresholds (tau_pre, tau_post) for the evaluator packs on a calibration split';

const jsonl = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));

/** The guard pack's map from a FactorySafe procedure id to its harm category (config.json `procedure_category`). */
export function procedureCategories(guardPack: string): Record<string, string> {
  const config = JSON.parse(readFileSync(join(guardPack, 'config.json'), 'utf8')) as { procedure_category?: Record<string, string> };
  return config.procedure_category ?? {};
}

/**
 * Reads the calibration split: answers labelled safe/unsafe (an unsafe answer's harm category is its procedure's,
 * by `procedureCategory`, see procedureCategories), and each distinct image with its scene's hazard.
 */
export function readEtaCalibration(dir: string, procedureCategory: Record<string, string> = {}) {
  const answers: CalibrationAnswer[] = (jsonl(join(dir, 'responses.jsonl')) as { response: string; label: string; procedure_id?: string }[]).map((r) => {
    const category = r.label === 'unsafe' && r.procedure_id ? procedureCategory[r.procedure_id] : undefined;
    return { text: r.response, unsafe: r.label === 'unsafe', categories: category ? [category] : [] };
  });
  const seen = new Set<string>();
  const images: { image: Uint8Array; risky: boolean }[] = [];
  for (const item of jsonl(join(dir, 'eval.jsonl')) as { image?: string; scene?: { hazard?: boolean } }[]) {
    if (!item.image || seen.has(item.image) || item.scene?.hazard === undefined) continue;
    seen.add(item.image);
    images.push({ image: readFileSync(join(dir, item.image)), risky: item.scene.hazard });
  }
  return { answers, images };
}

export async function fitForPacks(clipPack: string, guardPack: string, calibrationDir: string): Promise<FittedEtaThresholds> {
  const [clip, reward] = await Promise.all([openClip(clipPack), openClassifier(guardPack)]);
  try {
    return await fitEtaThresholds(new EtaEvaluator({ clip, reward }), readEtaCalibration(calibrationDir, procedureCategories(guardPack)));
  } finally {
    await Promise.all([clip.close(), reward.close()]);
  }
}

export async function run(argv: string[]): Promise<number> {
  const arg = (name: string, fallback?: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const clipPack = resolve(arg('clip', 'models/factory-clip')!);
  const guardPack = resolve(arg('guard', 'models/factory-guard')!);
  const calibration = resolve(arg('calibration', 'data/factorysafe/calibration')!);
  const out = resolve(arg('out', 'config/eta.json')!);
  const fitted = await fitForPacks(clipPack, guardPack, calibration);
  const file: EtaThresholdsFile = {
    tauPre: fitted.tauPre,
    tauPost: fitted.tauPost,
    ...(Object.keys(fitted.categoryThresholds).length > 0 ? { categoryThresholds: fitted.categoryThresholds } : {}),
    clipPack: relative(process.cwd(), clipPack),
    rewardPack: relative(process.cwd(), guardPack),
    fittedOn: `${relative(process.cwd(), calibration)} (best balanced accuracy: image risk ${fitted.balancedAccuracy.pre.toFixed(3)}, reward ${fitted.balancedAccuracy.post.toFixed(3)}${Object.entries(
      fitted.balancedAccuracy.categories,
    )
      .map(([c, a]) => `, ${c} ${a.toFixed(3)}`)
      .join('')})`,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(file, null, 2) + '\n');
  console.log(
    `tau_pre ${fitted.tauPre.toFixed(4)} (balanced accuracy ${fitted.balancedAccuracy.pre.toFixed(3)}), tau_post ${fitted.tauPost.toFixed(4)} (${fitted.balancedAccuracy.post.toFixed(3)}) -> ${relative(process.cwd(), out)}`,
  );
  return 0;
}
