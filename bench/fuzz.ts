/**
 * `npm run bench -- fuzz [--requests 10000] [--concurrency 16] [--max-s 600] [--huge 6] [--seed 1]`
 *
 * Hostile requests over loopback against the intake API as its own child process (no workers): every route and
 * body type, admin paths encoded every which way without the key, `<id>:items` ids, multipart without a
 * boundary, metadata nested 5,000 deep, prompts of tens of MB, zero-width and lone-surrogate text, 100000x1
 * PNGs, truncated PNG/JPEG, three files to /v1/jobs, Basic auth without a colon, bad percent-encoding, overlong
 * params, random bytes, concurrent duplicate Idempotency-Keys. Prints status counts by request class, 5xx by
 * class, max latency, the intake's peak RSS and what got enqueued against the 202s answered.
 * Goal: 0 5xx, 0 responses over 2 s, RSS under 512 MB, nothing enqueued that was refused.
 * The harness is test/harness/fuzz.ts; test/fuzz.e2e.test.ts runs a short form of it.
 */
import { formatFuzzReport, runFuzz } from '../test/harness/fuzz';

function arg(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
}

export async function run(argv: string[]): Promise<void> {
  const options = {
    requests: arg(argv, 'requests', 10_000),
    concurrency: arg(argv, 'concurrency', 16),
    maxSeconds: arg(argv, 'max-s', 600),
    hugeCount: arg(argv, 'huge', 6),
    seed: arg(argv, 'seed', 1),
  };
  console.log(`fuzz bench: node ${process.version}, ${JSON.stringify(options)}`);
  const r = await runFuzz(options);
  console.log(`\n${formatFuzzReport(r)}`);
  const fiveXx = Object.values(r.fiveXx).reduce((a, b) => a + b, 0);
  const slow = Object.values(r.slow).reduce((a, b) => a + b, 0);
  const goals: [string, boolean][] = [
    ['0 5xx', fiveXx === 0],
    ['0 responses over 2 s', slow === 0],
    ['intake RSS under 512 MB', (r.peakRssBytes ?? 0) < 512 * 1024 * 1024],
    ['nothing enqueued that was refused', r.enqueuedRefused.length === 0],
    ['no admin path open without the key', r.adminOpen.length === 0],
    [`at least ${options.requests} requests sent`, r.sent >= options.requests],
  ];
  for (const [name, ok] of goals) console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
  if (goals.some(([, ok]) => !ok)) process.exitCode = 1;
}
