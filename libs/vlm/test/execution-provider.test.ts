/**
 * REQUIRE_EXECUTION_PROVIDER: a session that lands on a fallback provider fails to open instead of serving there,
 * and the VLM engine (on its worker thread) refuses to open with the reason. On this CPU machine the CUDA provider
 * is not installed, so `cuda,cpu` falls back to cpu; on a machine where CUDA loads, the engine runs on it.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXECUTION_ENV, executionFromEnv, openClassifier, openVlmEngine } from '@libs/vlm';
import { openSession } from '../src/sessions';

const GUARD = join(__dirname, '../../../models/tiny-guard/onnx/model.onnx');
const VLM = join(__dirname, '../../../models/tiny-vlm');

describe('required execution provider', () => {
  it('reads the list, the requirement and the thread count from the environment, and refuses a requirement outside the list', () => {
    // Unset, the thread count is the process's CPU allotment (onnxruntime's own default is the host's cores).
    expect(executionFromEnv({}, () => 3)).toEqual({ executionProviders: ['cpu'], requireExecutionProvider: undefined, intraOpNumThreads: 3 });
    expect(
      executionFromEnv(
        { [EXECUTION_ENV.providers]: 'cuda, cpu', [EXECUTION_ENV.require]: 'cuda', [EXECUTION_ENV.intraOpThreads]: '2', [EXECUTION_ENV.spinWait]: 'false' },
        () => 3,
      ),
    ).toEqual({
      executionProviders: ['cuda', 'cpu'],
      requireExecutionProvider: 'cuda',
      intraOpNumThreads: 2,
      spinWait: false,
    });
    expect(executionFromEnv({ [EXECUTION_ENV.spinWait]: 'true' }, () => 1)).toMatchObject({ intraOpNumThreads: 1, spinWait: true });
    expect(() => executionFromEnv({ [EXECUTION_ENV.spinWait]: 'sometimes' })).toThrow();
    expect(() => executionFromEnv({ [EXECUTION_ENV.providers]: 'cpu', [EXECUTION_ENV.require]: 'cuda' })).toThrow(/not among/);
  });

  it('a session that falls back to another provider than the required one fails to open', async () => {
    const opened = await openSession(GUARD, { executionProviders: ['cuda', 'cpu'] }).catch((err: Error) => err);
    expect(opened).not.toBeInstanceOf(Error);
    const got = (opened as { executionProvider: string }).executionProvider;
    const required = openSession(GUARD, { executionProviders: ['cuda', 'cpu'], requireExecutionProvider: 'cuda' });
    if (got === 'cuda') {
      await expect(required).resolves.toMatchObject({ executionProvider: 'cuda' });
    } else {
      expect(got).toBe('cpu');
      await expect(required).rejects.toMatchObject({ name: 'ExecutionProviderMismatchError', required: 'cuda', got: 'cpu' });
    }
    await expect(openSession(GUARD, { executionProviders: ['cpu'], requireExecutionProvider: 'cpu' })).resolves.toMatchObject({ executionProvider: 'cpu' });
    await expect(openClassifier(join(GUARD, '../..'), { executionProviders: ['cpu'], requireExecutionProvider: 'cpu' })).resolves.toBeDefined();
  });

  it('the VLM engine on its worker thread refuses to open on the fallback', async () => {
    const engine = openVlmEngine({ packDir: VLM, thread: 'worker', executionProviders: ['cuda', 'cpu'], requireExecutionProvider: 'cuda' });
    const outcome = await engine.then(
      async (e) => {
        const ep = e.info().executionProvider;
        await e.close();
        return ep;
      },
      (err: Error) => err,
    );
    if (outcome instanceof Error) expect(outcome.message).toMatch(/execution provider "cuda" is required but the session runs on "cpu"/);
    else expect(outcome).toBe('cuda');
  });
});
