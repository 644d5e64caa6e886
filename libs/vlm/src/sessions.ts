import { InferenceSession } from 'onnxruntime-node';

export interface SessionOptions {
  /** Execution providers in order of preference; the first that loads wins. Default: ['cpu']. */
  executionProviders?: string[];
  /** Threads per session for one operator; default lets onnxruntime decide. */
  intraOpNumThreads?: number;
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
  for (const ep of providers) {
    try {
      const session = await InferenceSession.create(path, {
        executionProviders: [ep],
        graphOptimizationLevel: 'all',
        ...(options.intraOpNumThreads ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
      });
      return { session, executionProvider: ep };
    } catch (err) {
      lastError = err;
    }
  }
  throw new Error(`no execution provider of [${providers.join(', ')}] could load ${path}: ${(lastError as Error)?.message ?? lastError}`);
}
