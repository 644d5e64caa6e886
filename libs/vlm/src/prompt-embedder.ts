import { checkRevisionFeed } from './decode-batch';
import type { EncodedPrompt, PromptInput, VlmProcessor } from './vlm-processor';
import type { RevisionFeed } from './types';
import type { VlmModel } from './vlm-model';

/** A prompt encoded to ids (and pixels); its embeddings are computed when the scheduler prefills it. */
export interface PreparedPrompt {
  length: number;
  encoded: EncodedPrompt;
}

/**
 * Prompt text (+ image) to decoder input embeddings. Encoding (chat template, tokenizer, image preprocessing) runs
 * when a request arrives; the embedding and the vision encoder run at prefill, inside the scheduler, so they never
 * overlap a decode step.
 */
export class PromptEmbedder {
  constructor(
    private readonly model: VlmModel,
    private readonly processor: VlmProcessor,
  ) {}

  async encode(input: PromptInput, feed?: RevisionFeed): Promise<PreparedPrompt> {
    checkRevisionFeed(this.model, feed);
    const encoded = await this.processor.encode(input);
    return { length: encoded.inputIds.length, encoded };
  }

  /**
   * The prompts' embeddings, in order. The images of all of them go through the vision encoder in one call (its
   * frames are independent images, stacked), not one call per prompt: a prefill of 32 image prompts ran the encoder
   * 32 times (issue 15).
   */
  async embedAll(prompts: readonly PreparedPrompt[]): Promise<Float32Array[]> {
    const withImage = prompts.filter((p) => p.encoded.pixels);
    const features = withImage.length ? await this.model.encodeImages(withImage.map((p) => p.encoded.pixels!)) : [];
    const byPrompt = new Map(withImage.map((p, i) => [p, features[i]]));
    const out: Float32Array[] = [];
    for (const p of prompts) out.push(await this.embeds(p.encoded, byPrompt.get(p)));
    return out;
  }

  /** Prompt embeddings with the image features written over the `<image>` token positions. */
  private async embeds(encoded: EncodedPrompt, features: Float32Array | undefined): Promise<Float32Array> {
    const hidden = this.model.hidden;
    const ids = encoded.inputIds;
    const embeds = new Float32Array(ids.length * hidden);
    await this.model.embedTokens(ids, embeds, 0);
    if (features) {
      const imageToken = this.model.pack.imageTokenId;
      let row = 0;
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] !== imageToken) continue;
        if ((row + 1) * hidden > features.length) throw new Error('prompt has more <image> tokens than the vision encoder gave features');
        embeds.set(features.subarray(row * hidden, (row + 1) * hidden), i * hidden);
        row++;
      }
      if (row * hidden !== features.length) throw new Error(`prompt has ${row} <image> tokens, the vision encoder gave ${features.length / hidden} features`);
    }
    return embeds;
  }
}
