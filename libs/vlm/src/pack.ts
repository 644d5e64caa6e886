import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { textConfigWithDefaults, vlmConfigWithDefaults } from './text-config-defaults';

/**
 * A model pack on disk, in the layout of the onnx-community exports of Idefics3/SmolVLM.
 * Everything the runtime needs to know is read from the pack's own config files, so a real
 * SmolVLM export runs with no code change.
 */
export interface TextModelConfig {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
}

export interface VlmPack {
  dir: string;
  name: string;
  text: TextModelConfig;
  /** Token id of `<image>`, replaced by image features; undefined for text-only packs. */
  imageTokenId?: number;
  /** Image tokens per frame (processor_config.json `image_seq_len`). */
  imageSeqLen: number;
  eosTokenIds: number[];
  padTokenId: number;
  maxNewTokens: number;
  files: { visionEncoder?: string; embedTokens: string; decoder: string; revisableDecoder?: string };
  /** sha256 of the decoder the revision vectors are computed on (the original, pre-surgery graph). */
  fingerprint: string;
  config: Record<string, any>;
  generationConfig: Record<string, any>;
  preprocessorConfig: Record<string, any>;
  tokenizerJson: Record<string, any>;
  tokenizerConfig: Record<string, any>;
}

export class PackError extends Error {
  constructor(
    readonly code: 'pack_missing_file' | 'pack_invalid_config',
    message: string,
  ) {
    super(message);
    this.name = 'PackError';
  }
}

export function readJson(path: string): Record<string, any> {
  if (!existsSync(path)) throw new PackError('pack_missing_file', `model pack file missing: ${path}`);
  return JSON.parse(readFileSync(path, 'utf8'));
}

function optionalJson(path: string): Record<string, any> {
  return existsSync(path) ? readJson(path) : {};
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function ids(value: unknown): number[] {
  if (value === undefined || value === null) return [];
  return (Array.isArray(value) ? value : [value]).map(Number);
}

/**
 * Reads text-model dimensions from a config (its `text_config` for VLMs), the same way transformers.js normalizes
 * them, with the config class's defaults for fields the export left out (Gemma 3). head_dim is read, not derived,
 * wherever the config has it: Gemma's heads * head_dim is not hidden_size.
 */
export function textModelConfig(config: Record<string, any>): TextModelConfig {
  const c = textConfigWithDefaults(config);
  const hidden = c.hidden_size;
  const heads = c.num_attention_heads;
  const kvHeads = c.num_key_value_heads ?? heads;
  const headDim = c.head_dim ?? hidden / heads;
  const layers = c.num_hidden_layers;
  const vocabSize = c.vocab_size;
  for (const [k, v] of Object.entries({ hidden, heads, kvHeads, headDim, layers, vocabSize })) {
    if (!Number.isInteger(v) || v <= 0) throw new PackError('pack_invalid_config', `config.json: text model ${k} is ${v}`);
  }
  return { layers, hidden, heads, kvHeads, headDim, vocabSize };
}

/** Newer exports keep the chat template beside tokenizer_config.json (chat_template.jinja or .json). */
function withChatTemplate(dir: string, tokenizerConfig: Record<string, any>): Record<string, any> {
  if (tokenizerConfig.chat_template) return tokenizerConfig;
  const jinja = join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return { ...tokenizerConfig, chat_template: readFileSync(jinja, 'utf8') };
  const json = join(dir, 'chat_template.json');
  if (existsSync(json)) return { ...tokenizerConfig, chat_template: readJson(json).chat_template };
  return tokenizerConfig;
}

export function loadVlmPack(dir: string): VlmPack {
  const config = vlmConfigWithDefaults(readJson(join(dir, 'config.json')));
  const generationConfig = optionalJson(join(dir, 'generation_config.json'));
  const preprocessorConfig = optionalJson(join(dir, 'preprocessor_config.json'));
  const processorConfig = optionalJson(join(dir, 'processor_config.json'));
  const tokenizerJson = readJson(join(dir, 'tokenizer.json'));
  const tokenizerConfig = withChatTemplate(dir, optionalJson(join(dir, 'tokenizer_config.json')));
  const text = textModelConfig(config);

  const onnx = (name: string) => join(dir, 'onnx', name);
  const decoder = onnx('decoder_model_merged.onnx');
  if (!existsSync(decoder)) throw new PackError('pack_missing_file', `model pack has no decoder: ${decoder}`);
  const revisable = onnx('decoder_model_merged_revisable.onnx');
  const revisableMeta = onnx('decoder_model_merged_revisable.json');
  const visionEncoder = onnx('vision_encoder.onnx');

  // The fingerprint names the weights the vectors were computed on; surgery must not change it.
  let fingerprint: string;
  if (existsSync(revisableMeta)) fingerprint = String(readJson(revisableMeta).source_sha256 ?? '');
  else fingerprint = '';
  if (!fingerprint) fingerprint = sha256File(decoder);

  const eos = ids(generationConfig.eos_token_id ?? config.eos_token_id ?? config.text_config?.eos_token_id);
  const pad = generationConfig.pad_token_id ?? config.pad_token_id ?? config.text_config?.pad_token_id ?? eos[0] ?? 0;
  return {
    dir,
    name: config._name_or_path || config.name || dir.split('/').filter(Boolean).pop()!,
    text,
    imageTokenId: config.image_token_id ?? config.image_token_index,
    // Gemma 3 calls it mm_tokens_per_image.
    imageSeqLen: processorConfig.image_seq_len ?? preprocessorConfig.image_seq_len ?? config.image_seq_len ?? config.mm_tokens_per_image ?? 0,
    eosTokenIds: eos,
    padTokenId: Number(pad),
    maxNewTokens: generationConfig.max_new_tokens ?? 64,
    files: {
      visionEncoder: existsSync(visionEncoder) ? visionEncoder : undefined,
      embedTokens: onnx('embed_tokens.onnx'),
      decoder,
      revisableDecoder: existsSync(revisable) ? revisable : undefined,
    },
    fingerprint,
    config,
    generationConfig,
    preprocessorConfig: { ...preprocessorConfig, ...processorConfig },
    tokenizerJson,
    tokenizerConfig,
  };
}
