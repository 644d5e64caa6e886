/**
 * `npm run bench -- chaos [--jobs 1000] [--kills 3] [--intake-kills 1] [--redis-kills 1] [--instances 2]
 *   [--tokens 48] [--wait-s 300] [--fsync everysec|always]`
 *
 * Every role as its own child process against a private AOF redis-server; N jobs (text and image, some with
 * supplied answers, image jobs flagged so the aligner runs on them) submitted over HTTP with Idempotency-Keys;
 * each worker role SIGKILLed `kills` times mid-job (restarted right after), the intake killed and restarted, and
 * the redis-server `kill -9`ed and restarted mid-run. Prints submitted / exactly one verdict / stuck / lost /
 * duplicated and the recovery times (kill -> the victim's job running again). Goal: 0 / 0 / 0, p100 <= 30 s.
 * The harness is test/harness/chaos.ts; test/chaos.e2e.test.ts runs a short form of it.
 */
import { formatChaosReport, runChaos } from '../test/harness/chaos';

function arg(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
}

export async function run(argv: string[]): Promise<void> {
  const instances = arg(argv, 'instances', 2);
  const fsyncAt = argv.indexOf('--fsync');
  const options = {
    jobs: arg(argv, 'jobs', 1000),
    kills: arg(argv, 'kills', 3),
    intakeKills: arg(argv, 'intake-kills', 1),
    redisKills: arg(argv, 'redis-kills', 1),
    instances: { generator: instances, evaluator: instances, aligner: instances },
    generatorTokens: arg(argv, 'tokens', 48),
    waitMs: arg(argv, 'wait-s', 300) * 1000,
    fsync: (fsyncAt >= 0 ? argv[fsyncAt + 1] : 'everysec') as 'always' | 'everysec',
  };
  console.log(`chaos bench: node ${process.version}, ${JSON.stringify(options)}`);
  const report = await runChaos(options);
  console.log(`\n${formatChaosReport(report)}`);
  const ok = report.stuck.length === 0 && report.lost.length === 0 && report.duplicated.length === 0 && !(report.recovery.p100Ms > 30_000);
  console.log(ok ? 'goal met: 0 stuck, 0 lost, 0 duplicated, recovery p100 <= 30 s' : 'GOAL NOT MET');
  if (!ok) process.exitCode = 1;
}
