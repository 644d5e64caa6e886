import { ChatTokenizer, type TemplateMessage } from './chat-tokenizer';
import { Idefics3ImageProcessor, type PixelFrames } from './image-processor';
import type { VlmPack } from './pack';

export interface PromptInput {
  prompt: string;
  image?: Uint8Array;
  /** Appended verbatim after the chat template's generation prompt. */
  assistantText?: string;
}

export interface EncodedPrompt {
  inputIds: number[];
  pixels?: PixelFrames;
}

/**
 * Turns a question (+ image) into decoder input ids and pixel frames, the way the pack's processor does:
 * chat template, then each `<image>` expanded to the image-token layout of the Idefics3 processor.
 */
export class VlmProcessor {
  readonly tokenizer: ChatTokenizer;
  private readonly images?: Idefics3ImageProcessor;
  private readonly imageToken = '<image>';
  private readonly fakeToken = '<fake_token_around_image>';
  private readonly globalToken = '<global-img>';

  constructor(private readonly pack: VlmPack) {
    this.tokenizer = new ChatTokenizer(pack.tokenizerJson, pack.tokenizerConfig);
    if (pack.files.visionEncoder) this.images = new Idefics3ImageProcessor(pack.preprocessorConfig);
  }

  /** The chat-templated prompt before image expansion (what a user of the template would see). */
  templatedPrompt(input: PromptInput): string {
    const content: TemplateMessage['content'] = input.image
      ? [{ type: 'image' }, { type: 'text', text: input.prompt }]
      : [{ type: 'text', text: input.prompt }];
    return this.tokenizer.applyChatTemplate([{ role: 'user', content }], true) + (input.assistantText ?? '');
  }

  async encode(input: PromptInput): Promise<EncodedPrompt> {
    let text = this.templatedPrompt(input);
    let pixels: PixelFrames | undefined;
    if (input.image) {
      if (!this.images) throw new Error(`model pack ${this.pack.name} has no vision encoder`);
      pixels = await this.images.process(input.image);
      const parts = text.split(this.imageToken);
      text = parts[0] + this.imageTokenString(pixels.rows, pixels.cols) + parts.slice(1).join(this.imageToken);
    }
    return { inputIds: this.tokenizer.encode(text), pixels };
  }

  /** Idefics3Processor's prompt layout: one block per tile (row/col tokens), then the global image. */
  private imageTokenString(rows: number, cols: number): string {
    const seq = this.imageToken.repeat(this.pack.imageSeqLen);
    const global = `${this.fakeToken}${this.globalToken}${seq}${this.fakeToken}`;
    if (rows === 0 && cols === 0) return global;
    let out = '';
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) out += `${this.fakeToken}<row_${r + 1}_col_${c + 1}>${seq}`;
      out += '\n';
    }
    return `${out}\n${global}`;
  }
}
