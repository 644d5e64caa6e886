/**
 * Chaos harness shared by `npm run bench -- chaos` and test/chaos.e2e.test.ts: a private AOF redis-server, the
 * intake API and every worker role as their own child processes (real HTTP, real BullMQ, tiny ONNX packs),
 * N jobs (text and image, some with supplied answers, image jobs flagged so the aligner runs on a share), SIGKILL
 * of each role several times mid-job (restarted right after), and `kill -9` + restart of the redis-server mid-run.
 *
 * Counts: submitted, accepted, exactly one verdict, stuck (accepted, not final at the end of the bounded wait),
 * lost (accepted id with no verdict), duplicated (a job seen final twice with differing verdicts, or a batch
 * counter past its total), and recovery per kill: kill -> the victim's job running again (BullMQ processedOn of
 * the rerun of the job whose stalledCounter went up).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import type { Stage, Verdict } from '@libs/contracts';
import { freePort, redisOptions, verdictKeys } from '@libs/queue';
import { spawnRole, startAofRedis, type AofRedis, type RoleProcess, type WorkerRoleName } from './processes';

export interface ChaosOptions {
  jobs: number;
  /** SIGKILLs per worker role. */
  kills: number;
  /** intake-api SIGKILLs (restarted; clients retry with their Idempotency-Key). */
  intakeKills: number;
  redisKills: number;
  /** Processes per worker role. */
  instances: Partial<Record<WorkerRoleName, number>>;
  /** Share of jobs with an image (these are flagged and aligned), and with a supplied answer (no generate stage). */
  imageShare: number;
  answerShare: number;
  /** Jobs submitted as batches of 5 (their counters are checked against the totals). */
  batchShare: number;
  generatorTokens: number;
  /** Bounded wait for every accepted job to be final, after the last submission. */
  waitMs: number;
  /** Hard bound on the whole run (boot, submissions, chaos, wait); past it the run stops and reports. */
  deadlineMs: number;
  fsync: 'always' | 'everysec';
  /** Extra env for every role (e.g. lock settings); the defaults are what is tested otherwise. */
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

export const CHAOS_DEFAULTS: ChaosOptions = {
  jobs: 1000,
  kills: 3,
  intakeKills: 1,
  redisKills: 1,
  instances: { generator: 2, evaluator: 2, aligner: 2 },
  imageShare: 0.4,
  answerShare: 0.25,
  batchShare: 0.2,
  generatorTokens: 48,
  waitMs: 300_000,
  deadlineMs: 1_800_000,
  fsync: 'everysec',
  env: {},
  log: (line) => console.log(line),
};

export interface KillRecord {
  target: WorkerRoleName | 'intake-api' | 'redis';
  at: number;
  /** Jobs active in the role's stage at the kill. */
  activeAtKill: number;
  /** ms from the kill to the victim's job running again; undefined: no job of the victim was seen rerunning. */
  recoveryMs?: number;
  jobId?: string;
  downMs?: number;
}

export interface ChaosReport {
  submitted: number;
  accepted: number;
  refused: Record<string, number>;
  /** Answers the clients retried (5xx, 429, 409, transport errors), by status and body excerpt. */
  retried: Record<string, number>;
  exactlyOne: number;
  stuck: string[];
  lost: string[];
  /** Lost ids accepted within 1.5 s before a redis kill: the AOF `everysec` window. */
  lostInFsyncWindow: string[];
  duplicated: string[];
  failedVerdicts: Record<string, number>;
  decisions: Record<string, number>;
  aligned: number;
  kills: KillRecord[];
  recovery: { samples: number; p50Ms: number; p100Ms: number; byRole: Record<string, number[]> };
  seconds: number;
  notes: string[];
}

const STAGE_OF: Record<WorkerRoleName, Stage> = { generator: 'generate', evaluator: 'evaluate', aligner: 'align' };

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1 < 0 ? 0 : Math.ceil(q * s.length) - 1)];
}

const finalStatus = (v: Verdict | null | undefined) => v?.status === 'succeeded' || v?.status === 'failed';
const fingerprint = (v: Verdict) => JSON.stringify([v.status, v.decision, v.final_answer, v.error?.code ?? null, v.completed_at]);

interface Submission {
  key: string;
  batch: boolean;
  body: unknown;
}

export async function runChaos(overrides: Partial<ChaosOptions> = {}): Promise<ChaosReport> {
  const o: ChaosOptions = { ...CHAOS_DEFAULTS, ...overrides, instances: { ...CHAOS_DEFAULTS.instances, ...overrides.instances } };
  const log = o.log;
  const started = Date.now();
  const hardStop = started + o.deadlineMs;
  const notes: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'chaos-'));
  const redisDataDir = mkdtempSync(join(work, 'redis-'));
  const blobsDir = mkdtempSync(join(work, 'blobs-'));
  const redis: AofRedis = await startAofRedis(redisDataDir, { fsync: o.fsync });
  const prefix = `{chaos${randomBytes(3).toString('hex')}}`;
  const apiKey = `chaos-${randomBytes(12).toString('hex')}`;
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    REDIS_URL: redis.url,
    QUEUE_PREFIX: prefix,
    BLOB_DIR: blobsDir,
    VLM_PACK_DIR: 'models/tiny-vlm',
    CLIP_PACK_DIR: 'models/tiny-clip',
    REWARD_PACK_DIR: 'models/tiny-guard',
    // Policy `either` with tau_pre 0 and tau_post below any score: every image job is flagged (image risk >= 0)
    // and aligned, text jobs pass on their answer. So the aligner works on the image share of the jobs.
    ETA_POLICY: 'either',
    ETA_TAU_PRE: '0',
    ETA_TAU_POST: '-1000000',
    GENERATOR_MAX_NEW_TOKENS: String(o.generatorTokens),
    ALIGNER_N: '2',
    ALIGNER_MAX_TOTAL_TOKENS: '16',
    ORT_INTRA_OP_THREADS: '1',
    HEALTH_PORT: '0',
    PORT: String(port),
    HOST: '127.0.0.1',
    API_KEYS: `chaos:${createHash('sha256').update(apiKey).digest('hex')}`,
    INTAKE_MAX_BACKLOG: String(o.jobs * 10 + 100),
    WORKER_LOCK_DURATION_MS: '',
    WORKER_STALLED_INTERVAL_MS: '',
    ...o.env,
  };

  const live: Record<string, RoleProcess[]> = { generator: [], evaluator: [], aligner: [], 'intake-api': [] };
  const all: RoleProcess[] = [];
  const spawnOne = (role: WorkerRoleName | 'intake-api') => {
    const p = spawnRole(role, env);
    all.push(p);
    live[role].push(p);
    p.exited.then((exit) => {
      live[role] = live[role].filter((x) => x !== p);
      if (exit.signal !== 'SIGKILL' && exit.signal !== 'SIGTERM' && exit.code !== 0 && !closing) {
        notes.push(`${role} pid ${p.pid} exited by itself (${exit.code ?? exit.signal}): ${p.output().slice(-600).replace(/\s+/g, ' ')}`);
      }
    });
    return p;
  };
  let closing = false;
  const stats = { redisDown: false };
  const ctl = new Redis({ ...redisOptions(redis.url), retryStrategy: () => 200 });
  ctl.on('error', () => undefined);
  const queues = Object.fromEntries(
    (['generate', 'evaluate', 'align'] as Stage[]).map((s) => [s, new Queue(s, { connection: redisOptions(redis.url), prefix })]),
  ) as Record<Stage, Queue>;
  for (const q of Object.values(queues)) q.on('error', () => undefined);

  const report: ChaosReport = {
    submitted: 0,
    accepted: 0,
    refused: {},
    retried: {},
    exactlyOne: 0,
    stuck: [],
    lost: [],
    lostInFsyncWindow: [],
    duplicated: [],
    failedVerdicts: {},
    decisions: {},
    aligned: 0,
    kills: [],
    recovery: { samples: 0, p50Ms: NaN, p100Ms: NaN, byRole: {} },
    seconds: 0,
    notes,
  };
  try {
    // Roles: workers first (their engines load), then the intake.
    const boot: RoleProcess[] = [];
    for (const role of ['generator', 'evaluator', 'aligner'] as WorkerRoleName[]) for (let i = 0; i < (o.instances[role] ?? 1); i++) boot.push(spawnOne(role));
    boot.push(spawnOne('intake-api'));
    await Promise.all(boot.map((p) => p.ready(180_000)));
    log(
      `chaos: ${boot.length} processes up after ${((Date.now() - started) / 1000).toFixed(1)} s (redis ${redis.url}, AOF appendfsync ${o.fsync}, prefix ${prefix})`,
    );

    // The jobs: deterministic mix.
    const pngs = await Promise.all(
      [0, 1, 2, 3].map((c) =>
        sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 40 * c, g: 200 - 30 * c, b: 90 } } })
          .png()
          .toBuffer(),
      ),
    );
    const item = (i: number) => {
      const image = (i * 7919) % 100 < o.imageShare * 100;
      const answer = (i * 104729) % 100 < o.answerShare * 100;
      return {
        prompt: `chaos job ${i}: how do I clear a jam on this machine?`,
        ...(image ? { image: pngs[i % pngs.length].toString('base64') } : {}),
        ...(answer ? { answer: `Switch it off and lock it out before clearing job ${i}.` } : {}),
      };
    };
    const submissions: Submission[] = [];
    const batchEvery = o.batchShare > 0 ? Math.max(5, Math.round(5 / o.batchShare)) : Infinity;
    for (let i = 0; i < o.jobs;) {
      if (i % batchEvery === 0 && i + 5 <= o.jobs) {
        submissions.push({ key: `chaos-batch-${i}`, batch: true, body: { items: [0, 1, 2, 3, 4].map((k) => item(i + k)) } });
        i += 5;
      } else {
        submissions.push({ key: `chaos-job-${i}`, batch: false, body: item(i) });
        i += 1;
      }
    }
    const acceptedAt = new Map<string, number>();
    const batches = new Map<string, number>();
    const submitOne = async (s: Submission): Promise<void> => {
      const deadline = Math.min(Date.now() + 120_000, hardStop);
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await fetch(`${baseUrl}/v1/${s.batch ? 'batches' : 'jobs'}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', 'idempotency-key': s.key },
            body: JSON.stringify(s.body),
            signal: AbortSignal.timeout(15_000),
          });
          const text = await res.text();
          if (res.status === 202 || res.status === 200 || res.status === 201) {
            const body = JSON.parse(text) as { id: string; job_ids?: string[] };
            const ids = s.batch ? body.job_ids! : [body.id];
            if (s.batch) batches.set(body.id, ids.length);
            for (const id of ids) if (!acceptedAt.has(id)) acceptedAt.set(id, Date.now());
            return;
          }
          // 429 (backlog), 5xx (Redis down), 409 (same key in flight): the client retries with the same key.
          const what = `${res.status} ${text.slice(0, 100)}`;
          if (res.status !== 429 && res.status < 500 && res.status !== 409) {
            report.refused[what] = (report.refused[what] ?? 0) + 1;
            return;
          }
          report.retried[what] = (report.retried[what] ?? 0) + 1;
        } catch (err) {
          // Connection refused while the intake restarts, or a timeout: retry.
          const what = `transport ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name}`;
          report.retried[what] = (report.retried[what] ?? 0) + 1;
        }
        if (Date.now() > deadline) {
          report.refused['gave up after 120 s of retries'] = (report.refused['gave up after 120 s of retries'] ?? 0) + 1;
          return;
        }
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    };

    // Verdict tracking straight from the store (HGET per id in one pipeline): the first final verdict of each job
    // is remembered, and a later different one is a duplicate.
    const firstFinal = new Map<string, string>();
    const duplicated = new Set<string>();
    const keys = verdictKeys(prefix);
    const track = async () => {
      const ids = [...acceptedAt.keys()];
      for (let at = 0; at < ids.length; at += 500) {
        const slice = ids.slice(at, at + 500);
        const pipe = ctl.pipeline();
        for (const id of slice) pipe.hget(keys.verdict(id), 'json');
        const results = (await pipe.exec()) ?? [];
        results.forEach(([err, json], k) => {
          if (err || typeof json !== 'string') return;
          const v = JSON.parse(json) as Verdict;
          if (!finalStatus(v)) return;
          const f = fingerprint(v);
          const seen = firstFinal.get(slice[k]);
          if (seen === undefined) firstFinal.set(slice[k], f);
          else if (seen !== f) duplicated.add(slice[k]);
        });
      }
    };
    let tracking = true;
    const tracker = (async () => {
      while (tracking) {
        if (!stats.redisDown) await track().catch(() => undefined);
        await sleep(500);
      }
    })();

    // Submit (8 clients) while the chaos schedule runs.
    let next = 0;
    const submitting = Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < submissions.length; i = next++) {
          await submitOne(submissions[i]);
          report.submitted += submissions[i].batch ? 5 : 1;
        }
      }),
    );

    // The schedule: one chain per worker role (`kills` SIGKILLs, each after the previous one's job has run again,
    // so every recovery is attributed to its own kill), and one chain for the intake and Redis kills.
    const killWorker = async (target: WorkerRoleName): Promise<void> => {
      const stage = STAGE_OF[target];
      // Wait (bounded) until every ready instance is busy, so the kill lands mid-job.
      const busyBy = Math.min(Date.now() + 60_000, hardStop);
      let active: Awaited<ReturnType<Queue['getActive']>> = [];
      let ready: RoleProcess[] = [];
      while (Date.now() < busyBy) {
        ready = live[target].filter((p) => p.isReady());
        active = stats.redisDown ? [] : await queues[stage].getActive().catch(() => []);
        if (ready.length > 0 && active.length > 0 && (target === 'evaluator' || active.length >= live[target].length)) break;
        await sleep(target === 'evaluator' ? 5 : 50);
      }
      if (ready.length === 0 || active.length === 0) {
        notes.push(`${target}: no job ran within 60 s for the kill; skipped`);
        return;
      }
      // With every instance busy (one job each), any instance is mid-job. Otherwise (the evaluator runs two jobs
      // per process, each a few ms) which one holds the job is unknown from outside: all ready instances are killed.
      const victims = active.length >= live[target].length ? [ready[Math.floor(Math.random() * ready.length)]] : ready;
      const before = new Map(active.map((j) => [j.id!, j.stalledCounter ?? 0]));
      const rec: KillRecord = { target, at: Date.now(), activeAtKill: active.length };
      await Promise.all(victims.map((v) => v.kill('SIGKILL')));
      report.kills.push(rec);
      for (const _ of victims) spawnOne(target); // restarted at once, as an orchestrator would
      const until = Math.min(rec.at + 60_000, hardStop);
      while (Date.now() < until && rec.recoveryMs === undefined) {
        for (const [id, stc] of before) {
          const job = await queues[stage].getJob(id).catch(() => undefined);
          if (job && (job.stalledCounter ?? 0) > stc && (job.processedOn ?? 0) > rec.at) {
            rec.recoveryMs = job.processedOn! - rec.at;
            rec.jobId = id;
            break;
          }
        }
        await sleep(250);
      }
      log(
        `  SIGKILL ${target} pid ${victims.map((v) => v.pid).join(', ')} (${rec.activeAtKill} active): ${rec.recoveryMs === undefined ? 'no job of it was seen rerunning within 60 s' : `job ${rec.jobId} running again after ${(rec.recoveryMs / 1000).toFixed(1)} s`}`,
      );
    };
    const killRedis = async () => {
      const rec: KillRecord = { target: 'redis', at: Date.now(), activeAtKill: 0 };
      stats.redisDown = true;
      await redis.kill9();
      await sleep(1000);
      await redis.restart();
      stats.redisDown = false;
      rec.downMs = Date.now() - rec.at;
      report.kills.push(rec);
      log(`  kill -9 redis-server; answering again after ${rec.downMs} ms`);
    };
    const killIntake = async () => {
      const victim = live['intake-api'][0];
      const rec: KillRecord = { target: 'intake-api', at: Date.now(), activeAtKill: 0 };
      await victim?.kill('SIGKILL');
      report.kills.push(rec);
      const fresh = spawnOne('intake-api');
      await fresh.ready(120_000).catch((e: Error) => notes.push(`intake restart: ${e.message.slice(0, 300)}`));
      rec.downMs = Date.now() - rec.at;
      log(`  SIGKILL intake-api; listening again after ${rec.downMs} ms`);
    };
    const chain = async (name: string, first: number, gap: number, steps: (() => Promise<void>)[]) => {
      await sleep(first);
      for (const step of steps) {
        if (Date.now() > hardStop) {
          notes.push(`deadline reached: ${name} kills skipped`);
          return;
        }
        await step();
        await sleep(gap);
      }
    };
    const times = (n: number, f: () => Promise<void>) => Array.from({ length: n }, () => f);
    const infra: (() => Promise<void>)[] = [];
    for (let k = 0; k < Math.max(o.redisKills, o.intakeKills); k++) {
      if (k < o.intakeKills) infra.push(killIntake);
      if (k < o.redisKills) infra.push(killRedis);
    }
    const chaos = Promise.all([
      chain(
        'generator',
        500,
        1500,
        times(o.kills, () => killWorker('generator')),
      ),
      chain(
        'evaluator',
        1000,
        1500,
        times(o.kills, () => killWorker('evaluator')),
      ),
      chain(
        'aligner',
        1500,
        1500,
        times(o.kills, () => killWorker('aligner')),
      ),
      chain('intake/redis', 3000, 8000, infra),
    ]);

    await Promise.all([submitting, chaos]);
    log(`  submissions done: ${acceptedAt.size} accepted of ${report.submitted} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // Bounded wait for every accepted job to be final.
    const waitUntil = Math.min(Date.now() + o.waitMs, hardStop);
    while (Date.now() < waitUntil) {
      await track().catch(() => undefined);
      if (firstFinal.size >= acceptedAt.size) break;
      await sleep(1000);
    }
    tracking = false;
    await tracker;
    await track().catch(() => undefined);

    // The final count, through the API (verdicts) and the store (batch counters).
    const redisKillTimes = report.kills.filter((k) => k.target === 'redis').map((k) => k.at);
    const ids = [...acceptedAt.keys()];
    let cursor = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = cursor++; i < ids.length; i = cursor++) {
          const id = ids[i];
          const res = await fetch(`${baseUrl}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${apiKey}` } }).catch(() => undefined);
          const body = res ? ((await res.json().catch(() => null)) as Verdict | null) : null;
          if (!res || res.status === 404 || !body || !('status' in body)) {
            report.lost.push(id);
            const at = acceptedAt.get(id)!;
            if (redisKillTimes.some((t) => at <= t && t - at <= 1500)) report.lostInFsyncWindow.push(id);
            continue;
          }
          if (!finalStatus(body)) {
            report.stuck.push(`${id} (${body.status})`);
            continue;
          }
          if (body.status === 'failed') report.failedVerdicts[body.error?.code ?? 'unknown'] = (report.failedVerdicts[body.error?.code ?? 'unknown'] ?? 0) + 1;
          else report.decisions[body.decision ?? '-'] = (report.decisions[body.decision ?? '-'] ?? 0) + 1;
          if (body.timings && typeof body.timings.align_ms === 'number') report.aligned++;
          if (!duplicated.has(id)) report.exactlyOne++;
        }
      }),
    );
    for (const [batchId, total] of batches) {
      const counts = await ctl.hgetall(keys.batchCounts(batchId));
      const sum = ['succeeded', 'failed'].reduce((a, k) => a + Number(counts[k] ?? 0), 0);
      if (sum > total) duplicated.add(`${batchId} (counters ${JSON.stringify(counts)} for ${total} items)`);
    }
    report.duplicated = [...duplicated];
    report.exactlyOne = Math.max(0, report.exactlyOne);
    report.accepted = acceptedAt.size;
    const byRole: Record<string, number[]> = {};
    for (const k of report.kills) if (k.recoveryMs !== undefined) (byRole[k.target] ??= []).push(k.recoveryMs);
    const samples = Object.values(byRole).flat();
    report.recovery = { samples: samples.length, p50Ms: quantile(samples, 0.5), p100Ms: samples.length ? Math.max(...samples) : NaN, byRole };
  } finally {
    closing = true;
    report.seconds = (Date.now() - started) / 1000;
    await Promise.all(all.filter((p) => p.alive()).map((p) => p.kill('SIGTERM')));
    await Promise.all(all.map((p) => Promise.race([p.exited, sleep(15_000).then(() => p.kill('SIGKILL'))])));
    await Promise.allSettled(Object.values(queues).map((q) => q.close()));
    ctl.disconnect();
    await redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return report;
}

export function formatChaosReport(r: ChaosReport): string {
  const s = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : '-');
  const lines = [
    `submitted ${r.submitted}, accepted ${r.accepted}, refused ${JSON.stringify(r.refused)}`,
    `retried by the clients: ${JSON.stringify(r.retried)}`,
    `exactly one verdict ${r.exactlyOne}, stuck ${r.stuck.length}, lost ${r.lost.length} (of them accepted within 1.5 s before a redis kill: ${r.lostInFsyncWindow.length}), duplicated ${r.duplicated.length}`,
    `decisions ${JSON.stringify(r.decisions)}, failed verdicts ${JSON.stringify(r.failedVerdicts)}, aligned ${r.aligned}`,
    `kills: ${r.kills.map((k) => `${k.target}${k.recoveryMs !== undefined ? ` ${s(k.recoveryMs)}` : k.downMs !== undefined ? ` down ${s(k.downMs)}` : ' (no rerun seen)'}`).join(', ')}`,
    `recovery (kill -> job running again): ${r.recovery.samples} samples, p50 ${s(r.recovery.p50Ms)}, p100 ${s(r.recovery.p100Ms)}; by role ${Object.entries(
      r.recovery.byRole,
    )
      .map(([k, v]) => `${k} [${v.map(s).join(', ')}]`)
      .join('; ')}`,
    `wall ${r.seconds.toFixed(1)} s`,
  ];
  if (r.stuck.length) lines.push(`stuck: ${r.stuck.slice(0, 10).join(', ')}${r.stuck.length > 10 ? ', ...' : ''}`);
  if (r.lost.length) lines.push(`lost: ${r.lost.slice(0, 10).join(', ')}${r.lost.length > 10 ? ', ...' : ''}`);
  if (r.duplicated.length) lines.push(`duplicated: ${r.duplicated.slice(0, 10).join(', ')}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}
