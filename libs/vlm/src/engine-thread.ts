/**
 * Entry point of the engine thread: owns the ONNX sessions so their synchronous native calls never block
 * the main event loop (BullMQ lock renewal, HTTP health checks). Calls are not queued here: each goes straight to the
 * engine, whose scheduler batches concurrent generations (and best-of-N candidates) into shared decode steps and
 * runs the rest (tap reads, conversation prefills) between them.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { EngineCall, EngineReply, EngineStartup } from './engine-protocol';
import { type EngineOptions, LocalVlmEngine } from './local-engine';

async function main(): Promise<void> {
  const port = parentPort!;
  let engine: LocalVlmEngine;
  try {
    engine = await LocalVlmEngine.open(workerData as EngineOptions);
  } catch (err) {
    port.postMessage({ startupError: { message: (err as Error).message } } satisfies EngineStartup);
    return;
  }
  port.postMessage({ ready: engine.info() } satisfies EngineStartup);

  port.on('message', (call: EngineCall) => {
    void (async () => {
      let reply: EngineReply;
      try {
        const target = engine as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
        const args = [...call.args];
        if (call.method === 'generate' && call.stream) {
          args[1] = (index: number, tokenId: number, delta: string) => port.postMessage({ id: call.id, token: [index, tokenId, delta] } satisfies EngineReply);
        }
        reply = { id: call.id, result: await target[call.method](...args) };
      } catch (err) {
        // Plain data across the thread: name and code let the main side rebuild a typed error (see WorkerVlmEngine).
        const e = err as Error & { code?: string; details?: Record<string, unknown> };
        reply = { id: call.id, error: { name: e.name, message: e.message, code: e.code, details: e.details } };
      }
      port.postMessage(reply);
      if (call.method === 'close') port.close();
    })();
  });
}

void main();
