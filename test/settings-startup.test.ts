/**
 * Start-up validation against the settings table (@libs/settings), in real processes: a role with a bad variable
 * exits non-zero before it opens anything, naming each bad variable; `modctl config --json` prints the resolved
 * values and their source with secrets redacted, and its errors as JSON.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function node(args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolvePromise) => {
    // A private Redis URL nobody listens on: a process that got past validation would fail differently (or hang).
    const base = { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', HEALTH_PORT: '0' };
    execFile(process.execPath, ['-r', '@swc-node/register', ...args], { cwd: ROOT, env: { ...base, ...env }, timeout: 90_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const modctl = (args: string[], env: NodeJS.ProcessEnv = {}) => node(['apps/modctl/src/main.ts', ...args], env);

describe('a role with bad settings exits at start-up naming each variable', () => {
  it('evaluator: WORKER_LOCK_DURATION_MS=soon and ETA_POLICY=maybe', async () => {
    const res = await node(['apps/evaluator/src/main.ts'], { WORKER_LOCK_DURATION_MS: 'soon', ETA_POLICY: 'maybe' });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('invalid configuration for evaluator: 2 bad variables');
    expect(res.stderr).toContain('WORKER_LOCK_DURATION_MS="soon"');
    expect(res.stderr).toContain('ETA_POLICY="maybe"');
    // Nothing was started: no Nest context, no connection attempt.
    expect(res.stdout + res.stderr).not.toMatch(/ready \(probes|ECONNREFUSED/);
  });

  it('intake-api: INTAKE_MAX_BACKLOG=-1, the Redis password redacted in the message', async () => {
    const res = await node(['apps/intake-api/src/main.ts'], { INTAKE_MAX_BACKLOG: '-1', REDIS_URL: 'http://user:hunter2@redis:6379' });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('INTAKE_MAX_BACKLOG="-1"');
    expect(res.stderr).toContain('REDIS_URL=');
    expect(res.stderr).not.toContain('hunter2');
  });

  it('notifier: WEBHOOK_TIMEOUT_MS=soon and WEBHOOK_ALLOWED_TARGETS with a space', async () => {
    const res = await node(['apps/notifier/src/main.ts'], { WEBHOOK_TIMEOUT_MS: 'soon', WEBHOOK_ALLOWED_TARGETS: '127.0.0.1,bad host' });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('invalid configuration for notifier: 2 bad variables');
    expect(res.stderr).toContain('WEBHOOK_TIMEOUT_MS="soon"');
    expect(res.stderr).toContain('WEBHOOK_ALLOWED_TARGETS=');
    expect(res.stdout + res.stderr).not.toMatch(/ready \(probes|ECONNREFUSED/);
  });
});

describe('modctl config', () => {
  it('--json: resolved values with their source, secrets redacted', async () => {
    const digest = 'a'.repeat(64);
    const res = await modctl(['config', '--role', 'intake-api', '--json'], {
      REDIS_URL: 'redis://app:hunter2@redis:6379/0',
      API_KEYS: `acme:${digest}`,
      ADMIN_API_KEY_SHA256: digest,
      INTAKE_MAX_BACKLOG: '50',
      PORT: '',
    });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).not.toContain('hunter2');
    expect(res.stdout).not.toContain(digest);
    const out = JSON.parse(res.stdout) as { role: string; settings: { name: string; value: unknown; source: string; roles: string[] }[] };
    expect(out.role).toBe('intake-api');
    const by = Object.fromEntries(out.settings.map((s) => [s.name, s]));
    expect(by.REDIS_URL).toMatchObject({ value: 'redis://app:***@redis:6379/0', source: 'env' });
    expect(by.API_KEYS).toMatchObject({ value: '***', source: 'env' });
    expect(by.ADMIN_API_KEY_SHA256.value).toBe('***');
    expect(by.INTAKE_MAX_BACKLOG).toMatchObject({ value: 50, source: 'env' });
    expect(by.PORT).toMatchObject({ value: 3000, source: 'default' });
    expect(by.INTAKE_IMAGE_FORMATS.value).toEqual(['png', 'jpeg', 'webp']);
    // Only what the intake reads.
    expect(by.WORKER_LOCK_DURATION_MS).toBeUndefined();
    expect(out.settings.every((s) => s.roles.includes('intake-api'))).toBe(true);
  });

  it('--json: bad variables and usage errors as JSON, non-zero', async () => {
    const bad = await modctl(['config', '--role', 'aligner', '--json'], { WORKER_LOCK_DURATION_MS: 'soon', ALIGNER_N: '0' });
    expect(bad.code).toBe(1);
    const err = JSON.parse(bad.stderr) as { error: { code: string; issues: { name: string }[] } };
    expect(err.error.code).toBe('settings_invalid');
    expect(err.error.issues.map((i) => i.name).sort()).toEqual(['ALIGNER_N', 'WORKER_LOCK_DURATION_MS']);

    const usage = await modctl(['config', '--role', 'nobody', '--json']);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stderr).error.code).toBe('usage');

    const unknown = await modctl(['nosuch', '--json']);
    expect(unknown.code).toBe(2);
    expect(JSON.parse(unknown.stderr).error.code).toBe('unknown_command');

    const model = await modctl(['model', 'prepare', '--json']);
    expect(model.code).toBe(2);
    expect(JSON.parse(model.stderr).error.code).toBe('usage');
  });

  it('text: one line per setting with its source', async () => {
    const res = await modctl(['config', '--role', 'generator'], { GENERATOR_MAX_NEW_TOKENS: '64' });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^GENERATOR_MAX_NEW_TOKENS\s+64\s+\[env\]$/m);
    expect(res.stdout).toMatch(/^VLM_PACK_DIR\s+models\/factory-vlm\s+\[default\]$/m);
    expect(res.stdout).not.toMatch(/^PORT\s/m);
  });
});
