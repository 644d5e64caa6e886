import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings, readSetting, redact, ROLES, SETTINGS, SettingsError, settingsFor } from '@libs/settings';

const ROOT = join(__dirname, '..', '..', '..');

describe('the settings table', () => {
  it('names each variable once, with a description and a default (a text or a note) and at least one role', () => {
    expect(new Set(SETTINGS.map((s) => s.name)).size).toBe(SETTINGS.length);
    for (const s of SETTINGS) {
      expect(s.description.length, s.name).toBeGreaterThan(0);
      expect(s.default !== undefined || Boolean(s.defaultNote), s.name).toBe(true);
      expect(s.roles.length, s.name).toBeGreaterThan(0);
    }
  });

  it('every default passes its own schema', () => {
    for (const role of ROLES) expect(() => loadSettings(role, {})).not.toThrow();
  });

  it('docs/deploy.md documents every variable', () => {
    const doc = readFileSync(join(ROOT, 'docs/deploy.md'), 'utf8');
    const table = doc.slice(doc.indexOf('## Configuration'));
    for (const s of SETTINGS) {
      const short = s.name.replace(/^INTAKE_MAX/, '');
      const documented =
        table.includes(`\`${s.name}\``) ||
        (s.name.startsWith('INTAKE_MAX') && table.includes(`\`${short}\``)) ||
        (/^(GENERATE|EVALUATE|ALIGN)_WORKER_CONCURRENCY$/.test(s.name) && table.includes('`<STAGE>_WORKER_CONCURRENCY`'));
      expect(documented, s.name).toBe(true);
    }
  });

  it('one error lists every bad variable of the role', () => {
    const env = { WORKER_LOCK_DURATION_MS: 'soon', INTAKE_MAX_BACKLOG: '-1', ETA_POLICY: 'maybe' };
    const err = (() => {
      try {
        loadSettings('intake-api', env);
      } catch (e) {
        return e as SettingsError;
      }
    })();
    expect(err).toBeInstanceOf(SettingsError);
    // The intake does not read the worker lock.
    expect(err!.issues.map((i) => i.name).sort()).toEqual(['ETA_POLICY', 'INTAKE_MAX_BACKLOG']);
    expect(err!.message).toContain('INTAKE_MAX_BACKLOG="-1"');
    expect(err!.message).toContain('ETA_POLICY="maybe"');
    expect(() => loadSettings('aligner', env)).toThrow(/WORKER_LOCK_DURATION_MS="soon"[\s\S]*ETA_POLICY="maybe"/);
  });

  it('rejects bad values of each kind', () => {
    const bad: Record<string, string> = {
      REDIS_URL: 'http://x',
      QUEUE_PREFIX: 'mod',
      HEALTH_PORT: '70000',
      INTAKE_DECODE_CHECK: 'yes',
      INTAKE_IMAGE_FORMATS: 'png,gif',
      METRICS_AUTH: 'nobody',
      ADMIN_API_KEY_SHA256: 'abc',
      API_KEYS: 'acme',
      ALIGNER_TEMPERATURE: '0',
      ORT_INTRA_OP_THREADS: '1.5',
    };
    for (const [name, value] of Object.entries(bad)) expect(() => readSetting({ [name]: value }, name), name).toThrow(name);
    expect(() => loadSettings('generator', { EXECUTION_PROVIDERS: 'cpu', REQUIRE_EXECUTION_PROVIDER: 'cuda' })).toThrow(/REQUIRE_EXECUTION_PROVIDER/);
  });

  it('resolves values and their source; empty counts as unset', () => {
    const loaded = loadSettings('evaluator', { WORKER_CONCURRENCY: '4', ETA_POLICY: '', EXECUTION_PROVIDERS: 'cuda, cpu' });
    expect(loaded.get('WORKER_CONCURRENCY')).toBe(4);
    expect(loaded.get('ETA_POLICY')).toBe('answer');
    expect(loaded.get('EXECUTION_PROVIDERS')).toEqual(['cuda', 'cpu']);
    expect(loaded.settings.find((s) => s.name === 'WORKER_CONCURRENCY')?.source).toBe('env');
    expect(loaded.settings.find((s) => s.name === 'ETA_POLICY')?.source).toBe('default');
    expect(settingsFor('evaluator').some((s) => s.name === 'PORT')).toBe(false);
  });

  it('redacts secrets: keys whole, the Redis password only', () => {
    expect(redact({ name: 'REDIS_URL', secret: true }, 'redis://u:hunter2@redis:6379/0')).toBe('redis://u:***@redis:6379/0');
    expect(redact({ name: 'API_KEYS', secret: true }, 'acme:' + 'a'.repeat(64))).toBe('***');
    expect(redact({ name: 'PORT', secret: false }, '3000')).toBe('3000');
  });
});
