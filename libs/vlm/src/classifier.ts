import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type InferenceSession, Tensor } from 'onnxruntime-node';
import { ChatTokenizer } from './chat-tokenizer';
import { padBatch } from './clip';
import { readJson } from './pack';
import { openSession, type SessionOptions } from './sessions';
import { sharedPrefixGroups, type SharedPrefixGroup } from './shared-prefix';
import type { ChatMessage, ConversationClassifier } from './types';

/**
 * Conversations of one call that begin with at least this many identical tokens are scored from one run of those
 * tokens (when the pack has onnx/model_with_past.onnx). Below it a shared run saves less than its second session
 * call costs; the aligner's candidates share their whole conversation up to the sentence being chosen (~60+ tokens
 * with the FactorySafe packs), conversations of different jobs only the template's first few.
 */
export const SHARED_PREFIX_MIN_TOKENS = 16;

/** Tokens the classifier fed its sessions, for benchmarks and tests. */
export interface ClassifierStats {
  calls: number;
  tokens: number;
  /** Conversations scored from a shared prefix. */
  sharedRows: number;
}

/** The with-past model's cache: per layer a key and a value tensor [rows, kvHeads, length, headDim]. */
interface PastConfig {
  layers: number;
  kvHeads: number;
  headDim: number;
}

/**
 * A sequence classifier or reward model pack (onnx/model.onnx: input_ids, attention_mask -> logits).
 * Conversations are formatted with the pack's own chat template, as reward models expect. The model is causal and
 * pooled at the last token (LlamaForSequenceClassification), so a conversation's score depends on its earlier tokens
 * only through their keys and values: with onnx/model_with_past.onnx (tools/modelzoo/guard.py), conversations that
 * share a prefix run it once, and each only its own tokens after it (the aligner rescored the same prompt, prefix
 * and answer so far for each of its N candidates, issue 15).
 */
export class SequenceClassifier implements ConversationClassifier {
  readonly stats: ClassifierStats = { calls: 0, tokens: 0, sharedRows: 0 };

  private constructor(
    private readonly session: InferenceSession,
    private readonly withPast: InferenceSession | undefined,
    private readonly past: PastConfig,
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
    const withPastFile = join(packDir, 'onnx', 'model_with_past.onnx');
    const withPast = existsSync(withPastFile) ? (await openSession(withPastFile, options)).session : undefined;
    const heads = config.num_attention_heads;
    const past = { layers: config.num_hidden_layers, kvHeads: config.num_key_value_heads ?? heads, headDim: config.head_dim ?? config.hidden_size / heads };
    return new SequenceClassifier(session, withPast, past, tokenizer, labels, padId);
  }

  /** The exact text the model scores for a conversation. */
  format(conversation: ChatMessage[]): string {
    return this.tokenizer.applyChatTemplate(conversation, false);
  }

  async classify(conversations: ChatMessage[][]): Promise<Float32Array[]> {
    if (conversations.length === 0) return [];
    const sequences = conversations.map((c) => this.tokenizer.encode(this.format(c)));
    const groups = this.withPast ? sharedPrefixGroups(sequences, SHARED_PREFIX_MIN_TOKENS) : [];
    const out: Float32Array[] = new Array(sequences.length);
    const grouped = new Set(groups.flatMap((g) => g.members));
    const alone = sequences.map((_, i) => i).filter((i) => !grouped.has(i));
    if (alone.length) (await this.classifyWhole(alone.map((i) => sequences[i]))).forEach((logits, k) => (out[alone[k]] = logits));
    if (groups.length) {
      const scored = await this.classifyShared(sequences, groups);
      groups.flatMap((g) => g.members).forEach((i, k) => (out[i] = scored[k]));
    }
    return out;
  }

  /** Each sequence on its own, right-padded into one call of the plain model. */
  private async classifyWhole(sequences: number[][]): Promise<Float32Array[]> {
    const { ids, mask, length } = padBatch(sequences, this.padId);
    const n = sequences.length;
    this.count(n * length);
    const out = await this.session.run({
      input_ids: new Tensor('int64', ids, [n, length]),
      attention_mask: new Tensor('int64', mask, [n, length]),
    });
    const logits = out.logits.data as Float32Array;
    const width = logits.length / n;
    return Array.from({ length: n }, (_, i) => logits.slice(i * width, (i + 1) * width));
  }

  /**
   * Two calls of the with-past model for all groups: their prefixes (one row per group, left-padded to the longest),
   * then every member's own tokens (right-padded) on its group's cached row. Positions and masks are the ones the
   * whole sequence has, so each member's logits at its last token are the plain model's (to float rounding).
   * Returns the logits of the groups' members, group after group.
   */
  private async classifyShared(sequences: number[][], groups: SharedPrefixGroup[]): Promise<Float32Array[]> {
    const session = this.withPast!;
    const { layers, kvHeads, headDim } = this.past;
    const g = groups.length;
    const width = Math.max(...groups.map((x) => x.prefix));
    const prefixIds = new BigInt64Array(g * width).fill(BigInt(this.padId));
    const prefixMask = new BigInt64Array(g * width);
    const prefixPositions = new BigInt64Array(g * width);
    groups.forEach(({ members, prefix }, r) => {
      const pad = width - prefix;
      const tokens = sequences[members[0]];
      for (let p = 0; p < prefix; p++) {
        prefixIds[r * width + pad + p] = BigInt(tokens[p]);
        prefixMask[r * width + pad + p] = 1n;
        prefixPositions[r * width + pad + p] = BigInt(p);
      }
    });
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', prefixIds, [g, width]),
      attention_mask: new Tensor('int64', prefixMask, [g, width]),
      position_ids: new Tensor('int64', prefixPositions, [g, width]),
    };
    for (let l = 0; l < layers; l++)
      for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = new Tensor('float32', new Float32Array(0), [g, kvHeads, 0, headDim]);
    this.count(g * width);
    const prefixOut = await session.run(feeds);

    const rows = groups.flatMap((x, r) => x.members.map((i) => ({ i, r, prefix: x.prefix })));
    const m = rows.length;
    const own = rows.map(({ i, prefix }) => sequences[i].slice(prefix));
    const length = Math.max(...own.map((o) => o.length));
    const ids = new BigInt64Array(m * length).fill(BigInt(this.padId));
    const positions = new BigInt64Array(m * length);
    const mask = new BigInt64Array(m * (width + length));
    rows.forEach(({ r, prefix }, k) => {
      mask.set(prefixMask.subarray(r * width, (r + 1) * width), k * (width + length));
      own[k].forEach((id, j) => {
        ids[k * length + j] = BigInt(id);
        positions[k * length + j] = BigInt(prefix + j);
        mask[k * (width + length) + width + j] = 1n;
      });
    });
    const suffixFeeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', ids, [m, length]),
      attention_mask: new Tensor('int64', mask, [m, width + length]),
      position_ids: new Tensor('int64', positions, [m, length]),
    };
    const rowSize = kvHeads * width * headDim;
    for (let l = 0; l < layers; l++) {
      for (const kv of ['key', 'value']) {
        const present = prefixOut[`present.${l}.${kv}`].data as Float32Array;
        const past = new Float32Array(m * rowSize);
        rows.forEach(({ r }, k) => past.set(present.subarray(r * rowSize, (r + 1) * rowSize), k * rowSize));
        suffixFeeds[`past_key_values.${l}.${kv}`] = new Tensor('float32', past, [m, kvHeads, width, headDim]);
      }
    }
    this.count(m * length);
    this.stats.sharedRows += m;
    const logits = (await session.run(suffixFeeds)).logits.data as Float32Array;
    const labels = logits.length / (m * length);
    return own.map((o, k) => logits.slice((k * length + o.length - 1) * labels, (k * length + o.length) * labels));
  }

  private count(tokens: number): void {
    this.stats.calls++;
    this.stats.tokens += tokens;
  }

  async close(): Promise<void> {
    await Promise.all([this.session.release(), this.withPast?.release()]);
  }
}
