/**
 * `npm run bench -- revision-overhead [--steps 3]` (several minutes: the large decoder loads under valgrind)
 * What the revisable decoder costs per decode step, in instructions counted by valgrind's callgrind, so the
 * figure does not depend on what else this machine is running. Decoders with the optimum export's node
 * pattern are built at the tiny pack's size and at SmolVLM-256M's size (random weights), prepared with
 * `prepareRevisableDecoder`, and each runs N decode steps (batch 8, 60 cached positions) after a warm-up.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeModel, prepareRevisableDecoder } from '@libs/onnx-graph';
import { buildOptimumDecoder, configFor, type DecoderSpec } from '../libs/onnx-graph/test/decoder-fixtures';
import { argValue } from './_stats';

const SIZES: Record<string, DecoderSpec> = {
  'tiny-vlm size (4 layers, hidden 128)': { layers: 4, hidden: 128, heads: 4, kvHeads: 2, vocab: 1000, intermediate: 256, seed: 1 },
  'SmolVLM-256M size (30 layers, hidden 576)': { layers: 30, hidden: 576, heads: 9, kvHeads: 3, vocab: 49152, intermediate: 1536, seed: 1 },
};

// Runs in its own node process under callgrind: opens one decoder and runs `steps` decode steps after a warm-up.
const STEP_SCRIPT = `
const ort = require(${JSON.stringify(require.resolve('onnxruntime-node'))});
const [file, steps, L, H, heads, kv] = process.argv.slice(2).map((v, i) => (i ? Number(v) : v));
(async () => {
  const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const B = 8, past = 60, hd = H / heads, f = {};
  f.inputs_embeds = new ort.Tensor('float32', new Float32Array(B * H).fill(0.1), [B, 1, H]);
  f.attention_mask = new ort.Tensor('int64', new BigInt64Array(B * (past + 1)).fill(1n), [B, past + 1]);
  f.position_ids = new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(past)), [B, 1]);
  for (let l = 0; l < L; l++) for (const k of ['key', 'value']) f['past_key_values.' + l + '.' + k] = new ort.Tensor('float32', new Float32Array(B * kv * past * hd).fill(0.01), [B, kv, past, hd]);
  if (s.inputNames.includes('revision_layer')) {
    f.revision_layer = new ort.Tensor('float32', new Float32Array(B * L * H).fill(0.01), [B, L, H]);
    f.revision_head = new ort.Tensor('float32', new Float32Array(B * L * H).fill(0.01), [B, L, H]);
    f.revision_mask = new ort.Tensor('float32', new Float32Array(B).fill(1), [B, 1]);
  }
  await s.run(f);
  for (let i = 0; i < steps; i++) await s.run(f);
})();`;

/**
 * Instructions executed inside the binding's `session.run` (callgrind --toggle-collect), so Node's start-up,
 * the model load and the garbage collector stay out of the figure.
 */
function runInstructions(script: string, args: string[]): number {
  const r = spawnSync(
    'valgrind',
    ['--tool=callgrind', '--callgrind-out-file=/dev/null', '--toggle-collect=InferenceSessionWrap::Run*', process.execPath, script, ...args],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    },
  );
  const count = /Collected : (\d+)/.exec(r.stderr ?? '');
  if (r.status !== 0 || !count) throw new Error(`callgrind gave no count: ${(r.stderr ?? '').slice(-500)}`);
  return Number(count[1]);
}

export async function run(argv: string[]): Promise<void> {
  const steps = Number(argValue(argv, 'steps', '3'));
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    console.log('valgrind is not installed (apt-get install valgrind): this benchmark counts instructions with callgrind');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'revision-overhead-'));
  const script = join(dir, 'step.js');
  writeFileSync(script, STEP_SCRIPT);
  try {
    console.log(`decode step, batch 8, 60 cached positions; instructions inside session.run per step, ${steps} steps after a warm-up (callgrind)\n`);
    for (const [label, spec] of Object.entries(SIZES)) {
      const pack = join(dir, label.replace(/\W+/g, '-'));
      execFileSync('mkdir', ['-p', join(pack, 'onnx')]);
      writeFileSync(join(pack, 'onnx', 'decoder_model_merged.onnx'), encodeModel(buildOptimumDecoder(spec)));
      writeFileSync(join(pack, 'config.json'), JSON.stringify(configFor(spec)));
      await prepareRevisableDecoder(pack);
      const args = (file: string, n: number) => [
        join(pack, 'onnx', file),
        String(n),
        String(spec.layers),
        String(spec.hidden),
        String(spec.heads),
        String(spec.kvHeads),
      ];
      // The first run allocates; the difference between 1 and 1 + N runs is N steady decode steps.
      const perStep = (file: string) => (runInstructions(script, args(file, steps)) - runInstructions(script, args(file, 0))) / steps;
      const plain = perStep('decoder_model_merged.onnx');
      const revisable = perStep('decoder_model_merged_revisable.onnx');
      console.log(
        `${label}: plain ${(plain / 1e6).toFixed(2)} M, revisable with revision on ${(revisable / 1e6).toFixed(2)} M: ratio ${(revisable / plain).toFixed(4)} (goal <= 1.03)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
