/**
 * Real processes for the crash, recovery, chaos and fuzz suites: each role as its own child
 * (`node -r @swc-node/register apps/<role>/src/main.ts`), and a private redis-server with AOF that can be
 * `kill -9`ed and restarted on the same port and directory. Everything listens on loopback only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_REDIS_URL, deleteKeys, freePort, redisAnswers } from '@libs/queue';
import { sha256Hex } from '@libs/storage';

export const ROOT = join(__dirname, '..', '..');

export type WorkerRoleName = 'generator' | 'evaluator' | 'aligner';
export type RoleName = WorkerRoleName | 'intake-api' | 'notifier';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

export interface RoleProcess {
  role: RoleName;
  child: ChildProcess;
  pid: number;
  startedAt: number;
  /** The last 64 KB of stdout and stderr together. */
  output(): string;
  exited: Promise<Exit>;
  alive(): boolean;
  /** Whether the role has logged that it is ready (and is still running). */
  isReady(): boolean;
  /** Resolves once the role logged that it is ready (workers) or listening (intake). */
  ready(timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<Exit>;
}

const READY: Record<RoleName, RegExp> = {
  generator: /generator ready/,
  evaluator: /evaluator ready/,
  aligner: /aligner ready/,
  notifier: /notifier ready/,
  'intake-api': /listening on/,
};

/** Children still running when this process exits (a test timeout, a crash) are SIGKILLed, not orphaned. */
const running = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
}

/**
 * How a role is started: from the TypeScript sources through swc (what the tests run), or from `npm run build`'s
 * output with plain node (what production runs).
 */
export type RoleBuild = 'source' | 'compiled';

function roleCommand(role: RoleName, build: RoleBuild): string[] {
  return build === 'compiled' ? [`dist/apps/${role}/src/main.js`] : ['-r', '@swc-node/register', `apps/${role}/src/main.ts`];
}

export function spawnRole(role: RoleName, env: NodeJS.ProcessEnv, build: RoleBuild = 'source'): RoleProcess {
  const child = spawn(process.execPath, roleCommand(role, build), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let out = '';
  const append = (d: Buffer) => {
    out += d.toString();
    if (out.length > 128 * 1024) out = out.slice(-64 * 1024);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => {
      exit = { code, signal, at: Date.now() };
      resolve(exit);
    }),
  );
  const proc: RoleProcess = {
    role,
    child,
    pid: child.pid!,
    startedAt: Date.now(),
    output: () => out,
    exited,
    alive: () => exit === undefined,
    isReady: () => exit === undefined && READY[role].test(out),
    async ready(timeoutMs = 90_000) {
      const deadline = Date.now() + timeoutMs;
      while (!READY[role].test(out)) {
        if (exit) throw new Error(`${role} (pid ${proc.pid}) exited before it was ready (${exit.code ?? exit.signal}):\n${out.slice(-4000)}`);
        if (Date.now() > deadline) throw new Error(`${role} (pid ${proc.pid}) not ready after ${timeoutMs} ms:\n${out.slice(-4000)}`);
        await sleep(50);
      }
    },
    async kill(signal = 'SIGKILL') {
      if (exit) return exit;
      child.kill(signal);
      return exited;
    },
  };
  return proc;
}

/** A pipeline's own key prefix, blob directory and keys (the demo tenant's, more tenants', the admin's), and its env. */
export function pipelineIdentity(options: { env?: NodeJS.ProcessEnv; /** More tenants: name -> plain key. */ tenants?: Record<string, string> }): {
  apiKey: string;
  adminKey: string;
  blobDir: string;
  env: NodeJS.ProcessEnv;
} {
  const apiKey = `demo-${randomBytes(16).toString('hex')}`;
  const adminKey = `admin-${randomBytes(16).toString('hex')}`;
  const blobDir = mkdtempSync(join(tmpdir(), 'mod-blobs-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QUEUE_PREFIX: `{demo${randomBytes(4).toString('hex')}}`,
    BLOB_DIR: blobDir,
    API_KEYS: [`demo:${sha256Hex(apiKey)}`, ...Object.entries(options.tenants ?? {}).map(([name, key]) => `${name}:${sha256Hex(key)}`)].join(','),
    ADMIN_API_KEY_SHA256: sha256Hex(adminKey),
    ...options.env,
  };
  return { apiKey, adminKey, blobDir, env };
}

export interface ProcessPipeline {
  url: string;
  roles: RoleProcess[];
  /** SIGTERM to every role (workers drain), then deletes the pipeline's keys and blob directory. */
  close(): Promise<void>;
}

/**
 * The intake and the three stage workers as child processes, one per role as they are deployed (one pod each), under
 * their own prefix, blob directory and keys: for benchmarks where roles must not share one event loop.
 */
export async function startProcessPipeline(options: { env?: NodeJS.ProcessEnv; tenants?: Record<string, string> } = {}): Promise<ProcessPipeline> {
  const { blobDir, env } = pipelineIdentity(options);
  const port = await freePort();
  const roleEnv = { ...env, PORT: String(port), HOST: '127.0.0.1', HEALTH_PORT: '0' };
  const roles = (['generator', 'evaluator', 'aligner', 'intake-api'] as const).map((role) => spawnRole(role, roleEnv));
  const close = async () => {
    await Promise.all(roles.map((r) => r.kill('SIGTERM')));
    await deleteKeys(env.REDIS_URL || DEFAULT_REDIS_URL, env.QUEUE_PREFIX!);
    rmSync(blobDir, { recursive: true, force: true });
  };
  try {
    await Promise.all(roles.map((r) => r.ready()));
  } catch (err) {
    await close();
    throw err;
  }
  return { url: `http://127.0.0.1:${port}`, roles, close };
}

/** VmHWM (peak resident set) of a process in bytes, from /proc; undefined where /proc is not there. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface AofRedis {
  url: string;
  port: number;
  dir: string;
  pid(): number;
  /** `kill -9`, then wait for the exit. */
  kill9(): Promise<void>;
  /** Starts redis-server again on the same port and directory (it replays the AOF) and waits until it answers. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** A private redis-server on a free loopback port with AOF on (`appendfsync` everysec unless told otherwise). */
export async function startAofRedis(dir: string, options: { fsync?: 'always' | 'everysec' } = {}): Promise<AofRedis> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess;
  const launch = async () => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        options.fsync ?? 'everysec',
        '--dir',
        dir,
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    track(child);
    const deadline = Date.now() + 30_000;
    while (!(await redisAnswers(url))) {
      if (child.exitCode !== null) throw new Error(`redis-server on ${port} exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer`);
      await sleep(50);
    }
  };
  const waitExit = (signal: NodeJS.Signals) =>
    new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once('exit', () => done());
      child.kill(signal);
    });
  await launch();
  return {
    url,
    port,
    dir,
    pid: () => child.pid!,
    kill9: () => waitExit('SIGKILL'),
    restart: launch,
    stop: () => waitExit('SIGTERM'),
  };
}
