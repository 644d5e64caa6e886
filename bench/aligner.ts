/**
 * `npm run bench -- aligner [--jobs 8] [--max-tokens 140] [--n 5] [--rounds 3] [--pack models/tiny-vlm] [--clip models/tiny-clip] [--reward models/tiny-guard]`
 * Wall-time cost of ETA's aligner (prefix + sentence-level best-of-N) per flagged job, as a multiple of one plain
 * greedy generation of the same prompt with the same token budget, on the tiny packs. Both run in one process,
 * interleaved per job (greedy, align, greedy, align ...) so machine drift hits both alike; medians over rounds per
 * job, then the mean over jobs. Random-weight packs: tokens per answer are reported because they drive the ratio.
 * A third interleaved variant aligns with the reward pack copied without onnx/model_with_past.onnx, so every
 * candidate's whole conversation is rescored: what scoring from the shared prefix saves (same choices, same answer).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { openClassifier, openClip, openVlmEngine } from '@libs/vlm';
import { BestOfNAligner, EtaEvaluator, sentenceEndTokenIds } from '@libs/safety';
import { argValue, median, timeMs } from './_stats';

interface Job {
  image: Uint8Array;
  prompt: string;
}

function demoJobs(limit: number): Job[] {
  const dir = resolve('samples/demo-batch');
  const lines = readFileSync(join(dir, 'batch.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim());
  return lines.slice(0, limit).map((l) => {
    const j = JSON.parse(l) as { image: string; prompt: string };
    return { prompt: j.prompt, image: new Uint8Array(readFileSync(join(dir, j.image))) };
  });
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function run(argv: string[]): Promise<void> {
  const jobs = demoJobs(Number(argValue(argv, 'jobs', '8')));
  const maxTokens = Number(argValue(argv, 'max-tokens', '140'));
  const n = Number(argValue(argv, 'n', '5'));
  const rounds = Number(argValue(argv, 'rounds', '3'));
  const vlmPack = resolve(argValue(argv, 'pack', 'models/tiny-vlm'));
  const clipPack = resolve(argValue(argv, 'clip', 'models/tiny-clip'));
  const rewardPack = resolve(argValue(argv, 'reward', 'models/tiny-guard'));
  const [engine, clip, reward] = await Promise.all([openVlmEngine({ packDir: vlmPack, thread: 'inline' }), openClip(clipPack), openClassifier(rewardPack)]);
  const evaluator = new EtaEvaluator({ clip, reward });
  const endTokenIds = sentenceEndTokenIds(vlmPack, ['.']);
  const aligner = new BestOfNAligner({ engine, evaluator, clip, endTokenIds }, { n, maxTotalTokens: maxTokens });
  // The same reward pack without its with-past model: the classifier rescores each whole conversation.
  const wholeDir = mkdtempSync(join(tmpdir(), 'reward-whole-'));
  cpSync(rewardPack, wholeDir, { recursive: true });
  rmSync(join(wholeDir, 'onnx', 'model_with_past.onnx'), { force: true });
  const wholeReward = await openClassifier(wholeDir);
  const wholeAligner = new BestOfNAligner(
    { engine, evaluator: new EtaEvaluator({ clip, reward: wholeReward }), clip, endTokenIds },
    { n, maxTotalTokens: maxTokens },
  );
  const info = engine.info();
  console.log(
    `aligner bench: ${info.name} (${info.layers} layers, hidden ${info.hidden}, EP ${info.executionProvider}), ${basename(clipPack)}, ${basename(rewardPack)}`,
  );
  console.log(
    `jobs ${jobs.length} (samples/demo-batch), budget ${maxTokens} new tokens, N ${n}, top-k ${aligner.config.topK}, T ${aligner.config.temperature}, ${rounds} rounds/job (median)\n`,
  );

  const greedy = (job: Job) => engine.generate([{ prompt: job.prompt, image: job.image, maxNewTokens: maxTokens }]);
  const align = (job: Job, seed: number) => aligner.align({ prompt: job.prompt, image: job.image, seed });
  const alignWhole = (job: Job, seed: number) => wholeAligner.align({ prompt: job.prompt, image: job.image, seed });
  // Warm-up: first-call allocations and session warm-up would otherwise land on job 1.
  await greedy(jobs[0]);
  await align(jobs[0], 0);

  const rows: {
    greedyMs: number;
    evalMs: number;
    alignMs: number;
    wholeMs: number;
    greedyTokens: number;
    alignTokens: number;
    sentences: number;
    decision: string;
  }[] = [];
  let sameAnswers = true;
  for (const [k, job] of jobs.entries()) {
    const g: number[] = [];
    const e: number[] = [];
    const a: number[] = [];
    const w: number[] = [];
    let greedyTokens = 0;
    let answer = '';
    let result: Awaited<ReturnType<typeof align>> | undefined;
    for (let r = 0; r < rounds; r++) {
      g.push(
        await timeMs(async () => {
          const [out] = await greedy(job);
          greedyTokens = out.tokens.length;
          answer = out.text;
        }),
      );
      e.push(await timeMs(() => evaluator.evaluate({ image: job.image, answer })));
      a.push(
        await timeMs(async () => {
          result = await align(job, k);
        }),
      );
      w.push(
        await timeMs(async () => {
          const whole = await alignWhole(job, k);
          if (whole.answer !== result!.answer) sameAnswers = false;
        }),
      );
    }
    const alignTokens = result!.steps.reduce((s, st) => s + st.candidates[st.chosen].tokens, 0);
    rows.push({
      greedyMs: median(g),
      evalMs: median(e),
      alignMs: median(a),
      wholeMs: median(w),
      greedyTokens,
      alignTokens,
      sentences: result!.steps.length,
      decision: result!.decision,
    });
  }

  console.log('job  greedy ms (tok)   eval ms   align ms (tok, sentences)   align/greedy');
  rows.forEach((r, i) =>
    console.log(
      `${String(i + 1).padStart(3)}  ${r.greedyMs.toFixed(1).padStart(9)} (${String(r.greedyTokens).padStart(3)})  ${r.evalMs.toFixed(1).padStart(8)}  ${r.alignMs.toFixed(1).padStart(9)} (${String(r.alignTokens).padStart(3)}, ${String(r.sentences).padStart(2)})          ${(r.alignMs / r.greedyMs).toFixed(2).padStart(6)}x  ${r.decision}`,
    ),
  );
  const mg = mean(rows.map((r) => r.greedyMs));
  const me = mean(rows.map((r) => r.evalMs));
  const ma = mean(rows.map((r) => r.alignMs));
  console.log(`\nmean greedy generation: ${mg.toFixed(1)} ms (${mean(rows.map((r) => r.greedyTokens)).toFixed(1)} tokens)`);
  console.log(`mean ETA evaluation (CLIP + reward): ${me.toFixed(1)} ms`);
  console.log(`mean aligner (prefix + best-of-${n}): ${ma.toFixed(1)} ms (${mean(rows.map((r) => r.alignTokens)).toFixed(1)} tokens)`);
  console.log(`aligner cost per flagged job: ${(ma / mg).toFixed(2)}x one greedy generation`);
  const mw = mean(rows.map((r) => r.wholeMs));
  console.log(
    `rescoring whole conversations instead of from the shared prefix: ${mw.toFixed(1)} ms, ${(mw / mg).toFixed(2)}x (shared / whole ${(ma / mw).toFixed(2)}; same answers: ${sameAnswers})`,
  );
  console.log(`whole flagged path (greedy + evaluate + align): ${((mg + me + ma) / mg).toFixed(2)}x one greedy generation`);
  await Promise.all([engine.close(), clip.close(), reward.close(), wholeReward.close()]);
  rmSync(wholeDir, { recursive: true, force: true });
}
