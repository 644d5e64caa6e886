/**
 * The roofline's inputs (decoderCost) against counts done by hand: a graph built in code, and the shipped tiny-vlm
 * decoder against the sizes in its config.json (q, k, v, o, gate, up, down per layer, and the untied lm_head).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { attentionFlopsPerToken, DataType, decoderCost, GraphBuilder, kvCacheBytes, readModel } from '@libs/onnx-graph';

const ROOT = join(__dirname, '..', '..', '..');

describe('decoderCost', () => {
  it('counts weight bytes and the FLOPs of weight matrix products, through Transpose, not activation products', () => {
    const g = new GraphBuilder();
    const x = g.input('x', DataType.FLOAT, ['batch', 8]);
    const w1 = g.floats('w1', [8, 16], new Float32Array(128));
    const w2 = g.floats('w2', [4, 16], new Float32Array(64)); // stored [out, in], as tied embeddings are
    const h = g.op('MatMul', [x, w1], 'mm1');
    const w2t = g.op('Transpose', [w2], 'w2t', { perm: [1, 0] });
    const y = g.op('MatMul', [h, w2t], 'mm2');
    g.op('MatMul', [y, g.op('Transpose', [y], 'yt', { perm: [1, 0] })], 'scores');
    g.output('scores_output_0', DataType.FLOAT, ['batch', 'batch']);
    const cost = decoderCost(g.model());
    expect(cost.weightBytes).toBe((128 + 64) * 4);
    expect(cost.matmulFlopsPerToken).toBe(2 * (8 * 16 + 16 * 4));
    expect(cost.weightMatmuls).toBe(2);
    expect(cost.activationMatmuls).toBe(1);
  });

  it("the tiny-vlm decoder's products are its config's layer sizes and lm_head", () => {
    const config = JSON.parse(readFileSync(join(ROOT, 'models/tiny-vlm/config.json'), 'utf8')).text_config;
    const {
      hidden_size: h,
      num_hidden_layers: layers,
      num_attention_heads: heads,
      num_key_value_heads: kv,
      head_dim: d,
      intermediate_size: ff,
      vocab_size: vocab,
    } = config;
    const perLayer = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * ff;
    const cost = decoderCost(readModel(join(ROOT, 'models/tiny-vlm/onnx/decoder_model_merged.onnx')));
    expect(cost.matmulFlopsPerToken).toBe(2 * (layers * perLayer + h * vocab));
    expect(cost.weightMatmuls).toBe(layers * 7 + 1);
    expect(cost.activationMatmuls).toBe(layers * 2);
    // The weights dominate the bytes: the matrices' floats plus norms and small constants, under 5% more.
    const matrices = 4 * (layers * perLayer + h * vocab);
    expect(cost.weightBytes).toBeGreaterThanOrEqual(matrices);
    expect(cost.weightBytes).toBeLessThan(matrices * 1.05);
  });

  it('attention FLOPs and cache bytes per token', () => {
    expect(attentionFlopsPerToken({ layers: 2, heads: 4, headDim: 8 }, 10)).toBe(2 * (2 * 4 * 8 * 10) * 2);
    expect(kvCacheBytes({ layers: 2, kvHeads: 2, headDim: 8 }, 10)).toBe(2 * 2 * 2 * 8 * 10 * 4);
  });
});
