/**
 * `npm run bench -- factorysafe-parity`: the build's PyTorch test-split figures (data/factorysafe/metrics.json)
 * recounted through the TypeScript runtime, greedy, with libs/evaluation's judge; and ETA's interference prefix
 * alone on the image+harmful items (how much of ETA's effect in this world is the shallow step).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isCorrect, isUnsafe, readEvalSet, type EvalItem } from '@libs/evaluation';
import { openVlmEngine, type VlmEngine } from '@libs/vlm';
import { argValue } from './_stats';

const BATCH = 16;
const MAX_NEW_TOKENS = 48;

async function answers(engine: VlmEngine, items: EvalItem[], baseDir: string, answerPrefix?: string): Promise<string[]> {
  const out: string[] = [];
  for (let k = 0; k < items.length; k += BATCH) {
    const batch = items.slice(k, k + BATCH);
    const generated = await engine.generate(
      batch.map((i) => ({ prompt: i.prompt, image: readFileSync(join(baseDir, i.image!)), maxNewTokens: MAX_NEW_TOKENS, answerPrefix })),
    );
    out.push(...generated.map((g) => g.text));
  }
  return out;
}

export async function run(argv: string[]): Promise<void> {
  const set = resolve(argValue(argv, 'set', 'data/factorysafe/test/test.jsonl'));
  const pytorch = JSON.parse(readFileSync(resolve(argValue(argv, 'metrics', 'data/factorysafe/metrics.json')), 'utf8'))['factory-vlm'];
  const items = readEvalSet(set);
  const baseDir = dirname(set);
  const harmful = items.filter((i) => i.kind === 'harmful');
  const visual = items.filter((i) => i.kind === 'benign_visual');
  const engine = await openVlmEngine({ packDir: resolve(argValue(argv, 'vlm', 'models/factory-vlm')), thread: 'inline' });
  try {
    const visualAnswers = await answers(engine, visual, baseDir);
    const harmfulAnswers = await answers(engine, harmful, baseDir);
    const pct = (n: number, d: number) => `${n}/${d} (${((100 * n) / d).toFixed(1)}%)`;
    const torch = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : `${(100 * v).toFixed(1)}%`);
    for (const [label, keep, py] of [
      ['all phrasings', () => true, pytorch],
      ['trained phrasings', (i: EvalItem) => !i.held_out_phrasing, pytorch.trained_phrasing],
      ['held-out phrasings', (i: EvalItem) => !!i.held_out_phrasing, pytorch.held_out_phrasing],
    ] as const) {
      const v = visual.map((item, k) => [item, visualAnswers[k]] as const).filter(([item]) => keep(item));
      const h = harmful.map((item, k) => [item, harmfulAnswers[k]] as const).filter(([item]) => keep(item));
      const correct = v.filter(([item, a]) => isCorrect(item, a)).length;
      const unsafe = h.filter(([item, a]) => isUnsafe(item, a)).length;
      console.log(`${label}:`);
      console.log(`  benign visual accuracy: TypeScript ${pct(correct, v.length)}, PyTorch ${torch(py?.benign_visual_acc)}`);
      console.log(`  image+harmful ASR:      TypeScript ${pct(unsafe, h.length)}, PyTorch ${torch(py?.asr_image)}`);
    }
    for (const prefix of [' As an AI assistant,', 'As an AI assistant']) {
      const prefixed = await answers(engine, harmful, baseDir, prefix);
      console.log(
        `image+harmful ASR with answer prefix ${JSON.stringify(prefix)}: ${pct(harmful.filter((item, k) => isUnsafe(item, prefixed[k])).length, harmful.length)}`,
      );
    }
  } finally {
    await engine.close();
  }
}
