import { checkRevisionFeed } from './decode-batch';
import type { EncodedPrompt, PromptInput, VlmProcessor } from './vlm-processor';
import type { RevisionFeed } from './types';
import type { VlmModel } from './vlm-model';

/** A prompt encoded to ids (and pixels); its embeddings are computed when the scheduler prefills it. */
export interface PreparedPrompt {
  length: number;
  embed(): Promise<Float32Array>;
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
    return { length: encoded.inputIds.length, embed: () => this.embeds(encoded) };
  }

  /** Prompt embeddings with the image features written over the `<image>` token positions. */
  private async embeds(encoded: EncodedPrompt): Promise<Float32Array> {
    const hidden = this.model.hidden;
    const ids = encoded.inputIds;
    const embeds = new Float32Array(ids.length * hidden);
    await this.model.embedTokens(ids, embeds, 0);
    if (encoded.pixels) {
      const features = await this.model.encodeImage(encoded.pixels);
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
