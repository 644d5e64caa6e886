import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ERROR_CODES, ModerationError, type ErrorCode } from '@libs/contracts';
import type { EngineCall, EngineMethod, EngineReply, EngineStartup } from './engine-protocol';
import type { EngineOptions } from './local-engine';
import type { SchedulerStats } from './scheduler';
import type {
  AlignmentStats,
  Candidate,
  CandidateOptions,
  ConversationRequest,
  GenerationRequest,
  GenerationResult,
  ModelInfo,
  TapFrame,
  TapRequest,
  TokenCallback,
  VlmEngine,
} from './types';

export class EngineError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

/**
 * Rebuilds an error that crossed the engine thread as plain data. A ModerationError (an undecodable image, say)
 * comes back as one, code and details included, so callers tell bad data from a fault by type, not by message.
 */
export function engineErrorOf(e: { name: string; message: string; code?: string; details?: Record<string, unknown> }): Error {
  if (e.name === 'ModerationError' && e.code && e.code in ERROR_CODES) return new ModerationError(e.code as ErrorCode, e.message, e.details);
  const err = new EngineError(e.message, e.code);
  err.name = e.name;
  return err;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  onToken?: TokenCallback;
}

/** The engine thread's script: compiled JS beside this file, or the TS source run through swc. */
function threadEntry(): { file: string; execArgv: string[] } {
  const js = join(__dirname, 'engine-thread.js');
  if (existsSync(js)) return { file: js, execArgv: [] };
  return { file: join(__dirname, 'engine-thread.ts'), execArgv: ['-r', '@swc-node/register'] };
}

/**
 * A `VlmEngine` whose model runs on a worker thread. onnxruntime-node's `run` is a synchronous native call
 * (microsoft/onnxruntime#19611), so keeping it off the main thread is what keeps the event loop free.
 */
export class WorkerVlmEngine implements VlmEngine {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited?: Error;

  private constructor(
    private readonly worker: Worker,
    private readonly modelInfo: ModelInfo,
  ) {
    worker.on('message', (reply: EngineReply) => this.onReply(reply));
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new EngineError(`engine thread exited with code ${code}`, 'engine_exited')));
  }

  static async open(options: EngineOptions): Promise<WorkerVlmEngine> {
    const entry = threadEntry();
    const worker = new Worker(entry.file, { workerData: options, execArgv: entry.execArgv });
    const info = await new Promise<ModelInfo>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      worker.once('error', onError);
      worker.once('message', (m: EngineStartup) => {
        worker.off('error', onError);
        if ('ready' in m) resolve(m.ready);
        else reject(new EngineError(m.startupError.message, 'engine_startup'));
      });
    });
    return new WorkerVlmEngine(worker, info);
  }

  private onReply(reply: EngineReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    if ('token' in reply) {
      p.onToken?.(...reply.token);
      return;
    }
    this.pending.delete(reply.id);
    if ('error' in reply) p.reject(engineErrorOf(reply.error));
    else p.resolve(reply.result);
  }

  private fail(err: Error): void {
    this.exited ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private call<T>(method: EngineMethod, args: unknown[], onToken?: TokenCallback): Promise<T> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onToken });
      this.worker.postMessage({ id, method, args, stream: onToken !== undefined } satisfies EngineCall);
    });
  }

  info(): ModelInfo {
    return this.modelInfo;
  }

  generate(requests: GenerationRequest[], onToken?: TokenCallback): Promise<GenerationResult[]> {
    return this.call('generate', [requests], onToken);
  }

  readTaps(requests: TapRequest[]): Promise<TapFrame[]> {
    return this.call('readTaps', [requests]);
  }

  open(request: ConversationRequest): Promise<number> {
    return this.call('open', [request]);
  }

  sampleCandidates(handle: number, options: CandidateOptions): Promise<Candidate[]> {
    return this.call('sampleCandidates', [handle, options]);
  }

  accept(handle: number, candidateIndex: number): Promise<void> {
    return this.call('accept', [handle, candidateIndex]);
  }

  text(handle: number): Promise<string> {
    return this.call('text', [handle]);
  }

  stats(handle: number): Promise<AlignmentStats> {
    return this.call('stats', [handle]);
  }

  release(handle: number): Promise<void> {
    return this.call('release', [handle]);
  }

  /** Counters of the engine thread's scheduler. */
  schedulerStats(): Promise<SchedulerStats> {
    return this.call('schedulerStats', []);
  }

  /** Releases the sessions, then waits for the thread to end on its own, so no native call is cut off. */
  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    await this.call('close', []);
    await exited;
  }
}
