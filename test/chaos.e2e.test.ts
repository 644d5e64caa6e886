/**
 * Short form of `npm run bench -- chaos` (same harness, test/harness/chaos.ts): every role as its own process
 * against a private AOF redis-server, 30 jobs, one SIGKILL per worker role and of the intake (each restarted), one
 * `kill -9` + restart of the redis-server; every accepted job ends with exactly one verdict. Default lock settings.
 */
import { describe, expect, it } from 'vitest';
import { formatChaosReport, runChaos } from './harness/chaos';

describe('chaos (short form)', () => {
  it('30 jobs through killed workers, a killed intake and a killed redis: 0 stuck, 0 lost, 0 duplicated', async () => {
    const report = await runChaos({
      jobs: 30,
      kills: 1,
      intakeKills: 1,
      redisKills: 1,
      instances: { generator: 1, evaluator: 1, aligner: 1 },
      // Long enough per job that each kill lands mid-job; short enough to stay within the CI budget.
      generatorTokens: 200,
      waitMs: 60_000,
      // Reports (and fails) before the test timeout rather than being cut off by it.
      deadlineMs: 150_000,
      log: () => undefined,
    });
    const text = formatChaosReport(report);
    console.log(text);
    expect(report.accepted, text).toBe(30);
    expect(report.stuck, text).toEqual([]);
    expect(report.lost, text).toEqual([]);
    expect(report.duplicated, text).toEqual([]);
    expect(report.exactlyOne, text).toBe(30);
    expect(report.aligned, text).toBeGreaterThan(0);
    expect(report.recovery.p100Ms > 30_000, text).toBe(false);
  }, 180_000);
});
