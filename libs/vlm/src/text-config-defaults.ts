/**
 * The values transformers gives fields a config.json leaves out. `save_pretrained` writes only what differs from
 * the config class's defaults, so real exports omit them: Gemma 3 4B's `text_config` has no num_attention_heads,
 * num_key_value_heads, head_dim or vocab_size at all. Reading such a pack needs the defaults of its config class.
 * Only classes whose defaults we checked against transformers' configuration files are listed.
 */
type Defaults = Record<string, number>;

/** transformers Gemma3TextConfig.__init__ defaults (configuration_gemma3.py). */
const GEMMA3_TEXT: Defaults = {
  vocab_size: 262_208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  sliding_window_pattern: 6,
};

/** transformers Gemma3Config.__init__ defaults (the VLM wrapper around the text config). */
const GEMMA3: Defaults = {
  mm_tokens_per_image: 256,
  boi_token_index: 255_999,
  eoi_token_index: 256_000,
  image_token_index: 262_144,
};

/** The text model's config with its class defaults under it; `text_config` for VLMs, the top level otherwise. */
export function textConfigWithDefaults(config: Record<string, any>): Record<string, any> {
  const text = config.text_config ?? config;
  // Gemma3Config builds its text_config as a Gemma3TextConfig whatever model_type the dict carries (or none).
  const gemma3 = config.model_type === 'gemma3' || text.model_type === 'gemma3_text';
  return gemma3 ? { ...GEMMA3_TEXT, ...text } : text;
}

/** The top-level (VLM) config with its class defaults under it; image defaults only where there is a vision tower. */
export function vlmConfigWithDefaults(config: Record<string, any>): Record<string, any> {
  return config.model_type === 'gemma3' && config.vision_config ? { ...GEMMA3, ...config } : config;
}
