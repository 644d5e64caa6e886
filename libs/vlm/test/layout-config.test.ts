/**
 * Configs as real exports write them: `save_pretrained` leaves out every field equal to the config class's default,
 * so Gemma 3 4B's text_config has no heads, KV heads, head_dim or vocabulary size. The loader fills them in from the
 * class defaults (transformers' Gemma3TextConfig / Gemma3Config), and reads head_dim rather than deriving it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PackError, loadVlmPack, textModelConfig } from '@libs/vlm';

/** google/gemma-3-4b-it config.json as published (vision_config trimmed to what matters here). */
const GEMMA3_4B = {
  architectures: ['Gemma3ForConditionalGeneration'],
  boi_token_index: 255999,
  eoi_token_index: 256000,
  eos_token_id: [1, 106],
  image_token_index: 262144,
  initializer_range: 0.02,
  mm_tokens_per_image: 256,
  model_type: 'gemma3',
  text_config: {
    hidden_size: 2560,
    intermediate_size: 10240,
    model_type: 'gemma3_text',
    num_hidden_layers: 34,
    rope_scaling: { factor: 8.0, rope_type: 'linear' },
    sliding_window: 1024,
  },
  torch_dtype: 'bfloat16',
  vision_config: { hidden_size: 1152, image_size: 896, model_type: 'siglip_vision_model', patch_size: 14 },
};

const root = mkdtempSync(join(tmpdir(), 'vlm-layout-config-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('text model config with class defaults', () => {
  it('Gemma 3 4B: 8 heads x 256 (2048 != hidden 2560), 4 KV heads, vocabulary 262208', () => {
    expect(textModelConfig(GEMMA3_4B)).toEqual({ layers: 34, hidden: 2560, heads: 8, kvHeads: 4, headDim: 256, vocabSize: 262208 });
  });

  it('a text_config without model_type under a gemma3 config is still a Gemma3TextConfig', () => {
    const { model_type: _drop, ...text } = GEMMA3_4B.text_config;
    expect(textModelConfig({ ...GEMMA3_4B, text_config: text }).headDim).toBe(256);
  });

  it('declared values win over the defaults', () => {
    const config = { ...GEMMA3_4B, text_config: { ...GEMMA3_4B.text_config, num_attention_heads: 16, head_dim: 128, vocab_size: 1000 } };
    expect(textModelConfig(config)).toMatchObject({ heads: 16, headDim: 128, vocabSize: 1000 });
  });

  it('other architectures get no invented defaults: a missing field is still refused', () => {
    expect(() => textModelConfig({ model_type: 'llama', hidden_size: 64, num_hidden_layers: 2, vocab_size: 10 })).toThrow(PackError);
    expect(() => textModelConfig({ model_type: 'llama', hidden_size: 64, num_hidden_layers: 2, vocab_size: 10 })).toThrow(/heads is undefined/);
  });

  it('a Gemma 3 pack reads mm_tokens_per_image as the image sequence length and image_token_index as the image token', () => {
    const dir = join(root, 'gemma3');
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    const { image_token_index: _t, mm_tokens_per_image: _m, ...withoutImageFields } = GEMMA3_4B;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(withoutImageFields));
    writeFileSync(join(dir, 'tokenizer.json'), '{}');
    writeFileSync(join(dir, 'onnx', 'decoder_model_merged.onnx'), '');
    const pack = loadVlmPack(dir);
    expect([pack.imageSeqLen, pack.imageTokenId, pack.eosTokenIds]).toEqual([256, 262144, [1, 106]]);
  });
});
