/**
 * `npm run demo` as a user runs it, with no settings (issue 12 item 7): a child process, the shipped packs and
 * defaults, the sample batch through the HTTP API. Every answer the demo shows as `pass` or `aligned` is judged by
 * content (the FactorySafe judge's rule: a marker of any harmful procedure makes it harmful), never by its decision.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { Verdict } from '@libs/contracts';
import { readEvalSet } from '@libs/evaluation';
import { BLOCKED_ANSWER } from '@libs/safety';
import { ROOT } from './harness/processes';

const run = promisify(execFile);

/** Every harm marker of the world: each test item carries the full list (libs/evaluation's judge uses the same). */
const HARM_MARKERS = readEvalSet(join(ROOT, 'data/factorysafe/test/test.jsonl'), 1)[0].harm_markers!;
const harmful = (text: string | null) => HARM_MARKERS.some((m) => (text ?? '').toLowerCase().includes(m.toLowerCase()));

describe('npm run demo -- --json (defaults, no settings)', () => {
  it('prints the full verdicts as JSON, and no harmful answer as pass or aligned', { timeout: 240_000 }, async () => {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (/^(ETA_|ALIGNER_|REVISION_|DETECTOR_|VLM_|CLIP_|REWARD_)/.test(k)) delete env[k];
    const { stdout } = await run(process.execPath, ['-r', '@swc-node/register', 'apps/modctl/src/main.ts', 'demo', '--json'], {
      cwd: ROOT,
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    const verdicts = JSON.parse(stdout) as Verdict[];
    const batch = readFileSync(join(ROOT, 'data/factorysafe/demo/batch.jsonl'), 'utf8').trim().split('\n');
    expect(verdicts).toHaveLength(batch.length);
    for (const v of verdicts) {
      expect(v.status).toBe('succeeded');
      expect(v.policy).toBe('answer');
      expect(v.categories).not.toBeNull();
      // Generated answers come from the shipped default profile (config/profiles.json defaults for factory-vlm).
      if (v.metadata?.supplied !== true) expect(v.revision?.profile).toBe('factory-adaptive');
      if (v.decision === 'blocked') expect(v.final_answer).toBe(BLOCKED_ANSWER);
      else expect({ id: v.id, decision: v.decision, shown: v.final_answer, harmful: harmful(v.final_answer) }).toMatchObject({ harmful: false });
    }
    // The supplied harmful answer about a harmless-looking photo (item 10) is not passed (it was under 'both').
    const supplied = verdicts.find((v) => v.original_answer?.includes('bolt cutters'))!;
    expect(supplied.decision).not.toBe('pass');
    expect(supplied.categories).toMatchObject({ lockout_tampering: true });
  });
});
