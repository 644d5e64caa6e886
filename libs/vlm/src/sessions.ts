import { InferenceSession } from 'onnxruntime-node';
import { readSetting } from '@libs/settings';
import { cpuAllotment } from './cpu-allotment';

export interface SessionOptions {
  /** Execution providers in order of preference; the first that loads wins. Default: ['cpu']. */
  executionProviders?: string[];
  /** Threads per session for one operator; unset lets onnxruntime decide (the host's cores: `executionFromEnv` sets it). */
  intraOpNumThreads?: number;
  /**
   * The provider this process must run on (e.g. 'cuda' in a GPU pod). When the session lands on another one (the CUDA
   * libraries missing, no device visible), opening fails instead of serving on the fallback: a GPU pod that quietly
   * runs on CPU is ~100x slower and looks healthy. Default: any provider of the list will do.
   */
  requireExecutionProvider?: string;
  /**
   * Whether the session's intra-op threads spin after a run (onnxruntime's default) instead of sleeping. Spinning
   * saves microseconds per call to whoever calls it back to back (the decoder), but a session that runs now and then
   * beside the engine (CLIP, the reward model) then burns cores the decoder needs. Default: true.
   */
  spinWait?: boolean;
}

/** Env variables of the execution settings, read by every role that opens sessions. */
export const EXECUTION_ENV = {
  providers: 'EXECUTION_PROVIDERS',
  require: 'REQUIRE_EXECUTION_PROVIDER',
  intraOpThreads: 'ORT_INTRA_OP_THREADS',
  spinWait: 'ORT_SPIN_WAIT',
} as const;

/**
 * `EXECUTION_PROVIDERS=cuda,cpu` (default cpu), `REQUIRE_EXECUTION_PROVIDER=cuda` (default none),
 * `ORT_INTRA_OP_THREADS` (default: the process's CPU allotment, `cpuAllotment`), `ORT_SPIN_WAIT` (unset: each
 * session's own default, see `SessionOptions.spinWait`).
 */
export function executionFromEnv(env: NodeJS.ProcessEnv = process.env, allotment: () => number = cpuAllotment): SessionOptions {
  const list = readSetting<string[]>(env, EXECUTION_ENV.providers) ?? ['cpu'];
  const required = readSetting<string>(env, EXECUTION_ENV.require);
  if (required && !list.includes(required)) {
    throw new Error(`${EXECUTION_ENV.require}=${required} is not among ${EXECUTION_ENV.providers}=${list.join(',')}`);
  }
  return {
    executionProviders: list,
    requireExecutionProvider: required,
    intraOpNumThreads: readSetting<number>(env, EXECUTION_ENV.intraOpThreads) ?? allotment(),
    spinWait: readSetting<boolean>(env, EXECUTION_ENV.spinWait),
  };
}

/** The session loaded, but not on the provider this process requires. */
export class ExecutionProviderMismatchError extends Error {
  constructor(
    readonly required: string,
    readonly got: string,
    readonly reasons: string,
  ) {
    super(`execution provider "${required}" is required but the session runs on "${got}"${reasons ? ` (${reasons})` : ''}`);
    this.name = 'ExecutionProviderMismatchError';
  }
}

export interface OpenedSession {
  session: InferenceSession;
  executionProvider: string;
}

/**
 * Creates a session on the first execution provider that loads. Sessions are created once per process and
 * reused: repeated create/release leaks host memory in onnxruntime-node (microsoft/onnxruntime#25325).
 */
export async function openSession(path: string, options: SessionOptions = {}): Promise<OpenedSession> {
  const providers = options.executionProviders?.length ? options.executionProviders : ['cpu'];
  let lastError: unknown;
  const failures: string[] = [];
  for (const ep of providers) {
    try {
      const session = await InferenceSession.create(path, {
        executionProviders: [ep],
        graphOptimizationLevel: 'all',
        ...(options.intraOpNumThreads ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
        ...(options.spinWait === false ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } : {}),
      });
      if (options.requireExecutionProvider && ep !== options.requireExecutionProvider) {
        await session.release();
        throw new ExecutionProviderMismatchError(options.requireExecutionProvider, ep, failures.join('; '));
      }
      return { session, executionProvider: ep };
    } catch (err) {
      if (err instanceof ExecutionProviderMismatchError) throw err;
      lastError = err;
      failures.push(
        `${ep}: ${String((err as Error)?.message ?? err)
          .split('\n')[0]
          .slice(0, 200)}`,
      );
    }
  }
  throw new Error(`no execution provider of [${providers.join(', ')}] could load ${path}: ${(lastError as Error)?.message ?? lastError}`);
}
