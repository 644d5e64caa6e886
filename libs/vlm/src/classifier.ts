import { join } from 'node:path';
import { type InferenceSession, Tensor } from 'onnxruntime-node';
import { ChatTokenizer } from './chat-tokenizer';
import { padBatch } from './clip';
import { readJson } from './pack';
import { openSession, type SessionOptions } from './sessions';
import type { ChatMessage, ConversationClassifier } from './types';

/**
 * A sequence classifier or reward model pack (onnx/model.onnx: input_ids, attention_mask -> logits).
 * Conversations are formatted with the pack's own chat template, as reward models expect.
 */
export class SequenceClassifier implements ConversationClassifier {
  private constructor(
    private readonly session: InferenceSession,
    private readonly tokenizer: ChatTokenizer,
    readonly labels: string[],
    private readonly padId: number,
  ) {}

  static async open(packDir: string, options: SessionOptions = {}): Promise<SequenceClassifier> {
    const config = readJson(join(packDir, 'config.json'));
    const tokenizerConfig = readJson(join(packDir, 'tokenizer_config.json'));
    const tokenizer = new ChatTokenizer(readJson(join(packDir, 'tokenizer.json')), tokenizerConfig);
    const id2label: Record<string, string> = config.id2label ?? { 0: 'score' };
    const labels = Object.keys(id2label)
      .sort((a, b) => Number(a) - Number(b))
      .map((k) => id2label[k]);
    const padToken = typeof tokenizerConfig.pad_token === 'string' ? tokenizerConfig.pad_token : tokenizerConfig.pad_token?.content;
    const padId = config.pad_token_id ?? (padToken ? tokenizer.tokenId(padToken) : undefined) ?? 0;
    const { session } = await openSession(join(packDir, 'onnx', 'model.onnx'), options);
    return new SequenceClassifier(session, tokenizer, labels, padId);
  }

  /** The exact text the model scores for a conversation. */
  format(conversation: ChatMessage[]): string {
    return this.tokenizer.applyChatTemplate(conversation, false);
  }

  async classify(conversations: ChatMessage[][]): Promise<Float32Array[]> {
    if (conversations.length === 0) return [];
    const { ids, mask, length } = padBatch(
      conversations.map((c) => this.tokenizer.encode(this.format(c))),
      this.padId,
    );
    const n = conversations.length;
    const out = await this.session.run({
      input_ids: new Tensor('int64', ids, [n, length]),
      attention_mask: new Tensor('int64', mask, [n, length]),
    });
    const logits = out.logits.data as Float32Array;
    const width = logits.length / n;
    return Array.from({ length: n }, (_, i) => logits.slice(i * width, (i + 1) * width));
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
