import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

/** Content of a chat message in the multimodal template format the HF chat templates expect. */
export type TemplateContent = string | Array<{ type: 'image' } | { type: 'text'; text: string }>;

export interface TemplateMessage {
  role: string;
  content: TemplateContent;
}

/**
 * The pack's tokenizer plus its chat template: tokenizer.json through @huggingface/tokenizers,
 * tokenizer_config.json's `chat_template` through @huggingface/jinja.
 */
export class ChatTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly template?: Template;
  private readonly specialTokens: Record<string, string>;

  constructor(tokenizerJson: Record<string, any>, tokenizerConfig: Record<string, any>) {
    this.tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    const chatTemplate = tokenizerConfig.chat_template;
    const source = Array.isArray(chatTemplate) ? chatTemplate.find((t: { name: string }) => t.name === 'default')?.template : chatTemplate;
    this.template = source ? new Template(source) : undefined;
    const token = (v: unknown) => (typeof v === 'string' ? v : ((v as { content?: string } | undefined)?.content ?? ''));
    this.specialTokens = {
      bos_token: token(tokenizerConfig.bos_token),
      eos_token: token(tokenizerConfig.eos_token),
      pad_token: token(tokenizerConfig.pad_token),
      unk_token: token(tokenizerConfig.unk_token),
    };
  }

  get hasChatTemplate(): boolean {
    return this.template !== undefined;
  }

  applyChatTemplate(messages: TemplateMessage[], addGenerationPrompt: boolean): string {
    if (!this.template) throw new Error('tokenizer_config.json has no chat_template');
    return this.template.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.specialTokens });
  }

  /** Encodes text that already carries its special tokens (a rendered chat template). */
  encode(text: string, addSpecialTokens = false): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** Ids of vocabulary entries that decode to text ending with one of `endings` (e.g. sentence ends). */
  idsDecodingTo(predicate: (text: string) => boolean): number[] {
    const out: number[] = [];
    for (const id of this.tokenizer.get_vocab(true).values()) {
      if (predicate(this.tokenizer.decode([id], { skip_special_tokens: true }))) out.push(id);
    }
    return out.sort((a, b) => a - b);
  }
}
