/**
 * `npm run bench -- aligner-batching [--jobs 50] [--flagged 0.2] [--max-tokens 64] [--n 5] [--rounds 3]`
 * The aligner stage with 20% of jobs flagged: the flagged jobs' alignments (prefix + sentence-level best-of-N on
 * models/factory-vlm, scored with factory-clip and factory-guard) all at once, so their candidate rows share the
 * scheduler's decode batches and their scoring shares CLIP and reward calls, against the same alignments one at a
 * time (the old concurrency 1). Interleaved rounds, one engine; prints flagged jobs/s of each and the ratio.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { coalescedClassifier, coalescedClip, BestOfNAligner, EtaEvaluator, sentenceEndTokenIds } from '@libs/safety';
import { openClassifier, openClip, openVlmEngine } from '@libs/vlm';
import { argValue, median } from './_stats';

export async function run(argv: string[]): Promise<void> {
  const jobs = Number(argValue(argv, 'jobs', '50'));
  const flaggedShare = Number(argValue(argv, 'flagged', '0.2'));
  const maxTokens = Number(argValue(argv, 'max-tokens', '64'));
  const n = Number(argValue(argv, 'n', '5'));
  const rounds = Number(argValue(argv, 'rounds', '3'));
  const vlmDir = resolve('models/factory-vlm');
  const dir = resolve('samples/demo-batch');
  const items = readFileSync(join(dir, 'batch.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { image?: string; prompt: string; answer?: string })
    .filter((i) => i.image && i.answer === undefined);
  const flagged = Array.from({ length: Math.round(jobs * flaggedShare) }, (_, i) => ({
    prompt: items[i % items.length].prompt,
    image: new Uint8Array(readFileSync(join(dir, items[i % items.length].image!))),
    seed: 1000 + i,
  }));
  const engine = await openVlmEngine({ packDir: vlmDir, thread: 'worker' });
  const clip = coalescedClip(await openClip(resolve('models/factory-clip')));
  const reward = coalescedClassifier(await openClassifier(resolve('models/factory-guard')));
  const evaluator = new EtaEvaluator({ clip, reward });
  const aligner = new BestOfNAligner({ engine, evaluator, clip, endTokenIds: sentenceEndTokenIds(vlmDir) }, { n, maxTotalTokens: maxTokens });
  try {
    const batched = () => Promise.all(flagged.map((j) => aligner.align(j)));
    const oneByOne = async () => {
      for (const j of flagged) await aligner.align(j);
    };
    await batched();
    const times = { batched: [] as number[], 'one at a time': [] as number[] };
    for (let r = 0; r < rounds; r++) {
      for (const [name, fn] of [
        ['batched', batched],
        ['one at a time', oneByOne],
      ] as const) {
        const t = performance.now();
        await fn();
        times[name].push(performance.now() - t);
      }
    }
    console.log(
      `aligner, ${flagged.length} flagged of ${jobs} jobs (${(flaggedShare * 100).toFixed(0)}%), n ${n}, ${maxTokens} tokens at most, factory packs, ${rounds} interleaved rounds`,
    );
    for (const [name, ts] of Object.entries(times)) console.log(`  ${name.padEnd(14)} ${((flagged.length * 1000) / median(ts)).toFixed(2)} flagged jobs/s`);
    const ratios = times.batched.map((ms, i) => times['one at a time'][i] / ms);
    console.log(`aligner batched / one at a time: ${median(ratios).toFixed(2)}  (rounds: ${ratios.map((x) => x.toFixed(2)).join(', ')})`);
  } finally {
    await engine.close();
    await clip.close();
    await reward.close();
  }
}
