/**
 * `npm run bench -- detokenizer [--pack models/factory-vlm] [--rounds 5]`
 * Streaming detokenization cost per token at answer lengths 32, 256 and 1,024: the incremental detokenizer (a short
 * window per token) against re-decoding the whole answer every token (what the decode loop did before), interleaved.
 * The incremental cost per token should stay flat; the whole-answer one grows with the length.
 */
import { resolve } from 'node:path';
import { ChatTokenizer, IncrementalDetokenizer, loadVlmPack } from '@libs/vlm';
import { argValue, median } from './_stats';

export async function run(argv: string[]): Promise<void> {
  const pack = loadVlmPack(resolve(argValue(argv, 'pack', 'models/factory-vlm')));
  const rounds = Number(argValue(argv, 'rounds', '5'));
  const tokenizer = new ChatTokenizer(pack.tokenizerJson, pack.tokenizerConfig);
  const source = tokenizer.encode(
    'Stop the press and lock it out before you open the guard. Check that the light curtain trips the clutch, then ask your supervisor. ',
  );
  console.log(`detokenizer on ${pack.name}, ${rounds} interleaved rounds (median microseconds per token)`);
  console.log('  tokens   incremental   whole answer each token   ratio');
  for (const length of [32, 256, 1024]) {
    const ids = Array.from({ length }, (_, i) => source[i % source.length]);
    const incremental = () => {
      const d = new IncrementalDetokenizer(tokenizer);
      for (const id of ids) d.push(id);
      d.flush();
    };
    const whole = () => {
      for (let i = 1; i <= ids.length; i++) tokenizer.decode(ids.slice(0, i));
    };
    const a: number[] = [];
    const b: number[] = [];
    incremental();
    whole();
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      incremental();
      a.push(((performance.now() - t) * 1000) / length);
      t = performance.now();
      whole();
      b.push(((performance.now() - t) * 1000) / length);
    }
    console.log(
      `  ${String(length).padStart(6)}   ${median(a).toFixed(1).padStart(11)}   ${median(b).toFixed(1).padStart(23)}   ${(median(b) / median(a)).toFixed(1)}x`,
    );
  }
}
