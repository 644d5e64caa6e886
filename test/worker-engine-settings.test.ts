/**
 * What a worker role opens its VLM engine with (libs/worker workerEngineOptions, the provider's only source).
 * Spinning onnxruntime threads took the CPUs of the event loop beside the engine: on 2 cores the pipeline ran at 0.31x
 * the direct runtime's throughput with spinning and 0.71x without (`npm run bench -- pipeline --only batching`).
 */
import { describe, expect, it } from 'vitest';
import { executionFromEnv, workerEngineOptions, type VlmEngineSettings } from '@libs/worker';

const settingsFrom = (env: NodeJS.ProcessEnv): VlmEngineSettings => {
  const execution = executionFromEnv(env, () => 2);
  return {
    packDir: 'models/tiny-vlm',
    executionProviders: execution.executionProviders!,
    intraOpNumThreads: execution.intraOpNumThreads,
    spinWait: execution.spinWait,
  };
};

describe('worker engine options', () => {
  it("a worker role's engine does not spin unless ORT_SPIN_WAIT says so", () => {
    expect(workerEngineOptions(settingsFrom({})).spinWait).toBe(false);
    expect(workerEngineOptions(settingsFrom({ ORT_SPIN_WAIT: 'true' })).spinWait).toBe(true);
    expect(workerEngineOptions(settingsFrom({ ORT_SPIN_WAIT: 'false' })).spinWait).toBe(false);
  });

  it('passes the rest of the settings through as they are', () => {
    const scheduler = { maxBatchSize: 4 };
    expect(workerEngineOptions({ ...settingsFrom({}), plainDecoder: false, scheduler, requireExecutionProvider: 'cpu' })).toEqual({
      packDir: 'models/tiny-vlm',
      executionProviders: ['cpu'],
      requireExecutionProvider: 'cpu',
      intraOpNumThreads: 2,
      spinWait: false,
      plainDecoder: false,
      scheduler,
    });
  });
});
