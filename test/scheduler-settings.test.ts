/**
 * The scheduler's numbers are the same everywhere: libs/vlm's defaults (the one place they are filled in), the
 * settings table's notes, the deploy docs' table, the ConfigMap, and the KEDA targets (one replica per batch).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ALIGNER_DEFAULTS } from '@libs/safety';
import { setting } from '@libs/settings';
import { DEFAULT_SCHEDULER_OPTIONS } from '@libs/vlm';
import { DEFAULT_EVALUATE_CONCURRENCY, gpuStageWorkerOptions, SCHEDULER_ENV } from '@libs/worker';

const ROOT = join(__dirname, '..');
type Doc = { kind: string; metadata: { name: string }; data?: Record<string, string>; spec?: any };
const docs = (file: string): Doc[] => parseAllDocuments(readFileSync(join(ROOT, 'k8s', file), 'utf8')).map((d) => d.toJS() as Doc);
const configMap = docs('configmap.yaml').find((d) => d.kind === 'ConfigMap')!.data!;
const kedaTarget = (file: string) => Number(docs(file).find((d) => d.kind === 'ScaledObject')!.spec.advanced.scalingModifiers.target);

describe('scheduler settings', () => {
  it("the settings table's notes and the deploy docs give libs/vlm's defaults", () => {
    const deploy = readFileSync(join(ROOT, 'docs', 'deploy.md'), 'utf8');
    for (const [key, name] of Object.entries(SCHEDULER_ENV) as [keyof typeof DEFAULT_SCHEDULER_OPTIONS, string][]) {
      const value = String(DEFAULT_SCHEDULER_OPTIONS[key]);
      expect(setting(name).defaultNote?.split(' ')[0], name).toBe(value);
      expect(deploy, name).toContain(`| \`${name}\` | ${value} |`);
    }
  });

  it('the ConfigMap sets the defaults, and the KEDA targets are the concurrency they give each role', () => {
    for (const [key, name] of Object.entries(SCHEDULER_ENV) as [keyof typeof DEFAULT_SCHEDULER_OPTIONS, string][])
      expect(Number(configMap[name]), name).toBe(DEFAULT_SCHEDULER_OPTIONS[key]);
    const env = { ...configMap };
    expect(kedaTarget('generator.yaml')).toBe(gpuStageWorkerOptions('generate', env).concurrency);
    expect(kedaTarget('aligner.yaml')).toBe(gpuStageWorkerOptions('align', env, ALIGNER_DEFAULTS.n).concurrency);
    expect(kedaTarget('evaluator.yaml')).toBe(DEFAULT_EVALUATE_CONCURRENCY);
  });

  it('an explicit stage concurrency wins over the batch capacity', () => {
    expect(gpuStageWorkerOptions('generate', { GENERATE_WORKER_CONCURRENCY: '3' }).concurrency).toBe(3);
    expect(gpuStageWorkerOptions('generate', { VLM_MAX_BATCH_SIZE: '8' }).concurrency).toBe(8);
  });
});
