/**
 * `npm run bench -- decode-scaling [--steps 4] [--rounds 3] [--batches 1,8,32,64]`
 * Decode tokens/s against batch size at SmolVLM-256M's size (30 layers, hidden 576, vocab 49152; random weights,
 * the decoder the revision-overhead bench builds, prepared revisable): one decode step over 60 cached positions
 * per row, timed in interleaved rounds. With models/factory-vlm the same curve through the engine is in
 * `npm run bench -- runtime --pack models/factory-vlm`. On a GPU a step costs about the same at batch 1 and 32,
 * which is why the scheduler batches; on this CPU the curve shows how much of that survives.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { encodeModel, prepareRevisableDecoder } from '@libs/onnx-graph';
import { buildOptimumDecoder, configFor, type DecoderSpec } from '../libs/onnx-graph/test/decoder-fixtures';
import { argValue, median } from './_stats';

const SMOLVLM_256M: DecoderSpec = { layers: 30, hidden: 576, heads: 9, kvHeads: 3, vocab: 49152, intermediate: 1536, seed: 1 };
const PAST = 60;

function feeds(spec: DecoderSpec, batch: number, revisable: boolean): Record<string, Tensor> {
  const { layers: L, hidden: H, heads, kvHeads } = spec;
  const hd = H / heads;
  const f: Record<string, Tensor> = {
    inputs_embeds: new Tensor('float32', new Float32Array(batch * H).fill(0.1), [batch, 1, H]),
    attention_mask: new Tensor('int64', new BigInt64Array(batch * (PAST + 1)).fill(1n), [batch, PAST + 1]),
    position_ids: new Tensor('int64', new BigInt64Array(batch).fill(BigInt(PAST)), [batch, 1]),
  };
  for (let l = 0; l < L; l++)
    for (const k of ['key', 'value'])
      f[`past_key_values.${l}.${k}`] = new Tensor('float32', new Float32Array(batch * kvHeads * PAST * hd).fill(0.01), [batch, kvHeads, PAST, hd]);
  if (revisable) {
    f.revision_layer = new Tensor('float32', new Float32Array(batch * L * H), [batch, L, H]);
    f.revision_head = new Tensor('float32', new Float32Array(batch * L * H), [batch, L, H]);
    f.revision_mask = new Tensor('float32', new Float32Array(batch), [batch, 1]);
  }
  return f;
}

export async function run(argv: string[]): Promise<void> {
  const steps = Number(argValue(argv, 'steps', '4'));
  const rounds = Number(argValue(argv, 'rounds', '3'));
  const batches = argValue(argv, 'batches', '1,8,32,64').split(',').map(Number);
  const dir = mkdtempSync(join(tmpdir(), 'decode-scaling-'));
  try {
    mkdirSync(join(dir, 'onnx'));
    writeFileSync(join(dir, 'onnx', 'decoder_model_merged.onnx'), encodeModel(buildOptimumDecoder(SMOLVLM_256M)));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(configFor(SMOLVLM_256M)));
    await prepareRevisableDecoder(dir);
    const session = await InferenceSession.create(join(dir, 'onnx', 'decoder_model_merged_revisable.onnx'), { graphOptimizationLevel: 'all' });
    const inputs = Object.fromEntries(batches.map((b) => [b, feeds(SMOLVLM_256M, b, true)]));
    for (const b of batches) await session.run(inputs[b]); // warm-up: allocation per shape
    const times: Record<number, number[]> = Object.fromEntries(batches.map((b) => [b, []]));
    for (let r = 0; r < rounds; r++) {
      for (const b of batches) {
        const t = performance.now();
        for (let s = 0; s < steps; s++) await session.run(inputs[b]);
        times[b].push((performance.now() - t) / steps);
      }
    }
    console.log(
      `SmolVLM-256M size, random weights, revisable decoder; one decode step over ${PAST} cached positions, ${rounds} interleaved rounds of ${steps} steps`,
    );
    const base = (1000 * batches[0]) / median(times[batches[0]]);
    for (const b of batches) {
      const ms = median(times[b]);
      const tps = (1000 * b) / ms;
      console.log(`  batch ${String(b).padStart(2)}: ${ms.toFixed(1)} ms/step, ${tps.toFixed(0)} tokens/s, ${(tps / base).toFixed(2)}x batch ${batches[0]}`);
    }
    await session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
