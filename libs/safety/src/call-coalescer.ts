import { ATTR, maxAttributeRecorder } from '@libs/telemetry';
import type { ChatMessage, ClipEmbedder, ConversationClassifier } from '@libs/vlm';

interface Pending<I, O> {
  input: I;
  resolve(output: O): void;
  reject(err: Error): void;
  /** Reports the size of the model call the input went in to the caller's span (undefined: not traced). */
  noteBatch?: (size: number) => void;
}

/**
 * Turns many concurrent one-job calls into few batched model calls. Calls made while a batch runs (or in the same
 * tick as the first) wait for it and then go as the next batch, so an idle evaluator adds no latency and a busy one
 * runs one CLIP call and one reward call for every job it holds, instead of one of each per job.
 */
export class CallCoalescer<I, O> {
  private queue: Pending<I, O>[] = [];
  private running = false;

  constructor(
    private readonly run: (inputs: I[]) => Promise<O[]>,
    /** Inputs per model call at most (its memory). */
    private readonly maxBatch = 64,
    /** Span attribute that gets the largest call each caller's inputs went in. */
    private readonly batchAttribute?: string,
  ) {}

  call(inputs: I[]): Promise<O[]> {
    const noteBatch = this.batchAttribute ? maxAttributeRecorder(this.batchAttribute) : undefined;
    const out = Promise.all(inputs.map((input) => new Promise<O>((resolve, reject) => this.queue.push({ input, resolve, reject, noteBatch }))));
    if (!this.running) {
      this.running = true;
      setImmediate(() => void this.drain());
    }
    return out;
  }

  private async drain(): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const outputs = await this.run(batch.map((p) => p.input));
        batch.forEach((p, i) => {
          p.noteBatch?.(batch.length);
          p.resolve(outputs[i]);
        });
      } catch (err) {
        // One bad input (an undecodable image) must not fail its neighbours: retry the batch one by one.
        if (batch.length === 1) batch[0].reject(err as Error);
        else
          for (const p of batch)
            await this.run([p.input]).then(
              ([o]) => {
                p.noteBatch?.(1);
                p.resolve(o);
              },
              (e: Error) => p.reject(e),
            );
      }
    }
    this.running = false;
  }
}

/** A ClipEmbedder whose concurrent calls share model calls. */
export function coalescedClip(clip: ClipEmbedder, maxBatch?: number): ClipEmbedder {
  const images = new CallCoalescer<Uint8Array, Float32Array>((xs) => clip.embedImages(xs), maxBatch, ATTR.clipImageBatch);
  const texts = new CallCoalescer<string, Float32Array>((xs) => clip.embedTexts(xs), maxBatch, ATTR.clipTextBatch);
  return {
    embedImages: (xs) => images.call(xs),
    embedTexts: (xs) => texts.call(xs),
    close: () => clip.close(),
  };
}

/** A ConversationClassifier whose concurrent calls share model calls. */
export function coalescedClassifier(reward: ConversationClassifier, maxBatch?: number): ConversationClassifier {
  const calls = new CallCoalescer<ChatMessage[], Float32Array>((xs) => reward.classify(xs), maxBatch, ATTR.rewardBatch);
  return {
    labels: reward.labels,
    classify: (xs) => calls.call(xs),
    close: () => reward.close(),
  };
}
