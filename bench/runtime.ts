/**
 * `npm run bench -- runtime [--pack models/tiny-vlm] [--rounds 7] [--batches 1,8,32,64]`
 * Prefill and decode tokens/s at each batch size (the batch-scaling curve, through the continuous-batching
 * scheduler); at batch 1 and 32 the roofline: decode against the memory-bandwidth and compute bounds computed from
 * the pack's own decoder (bench/_roofline.ts probes, taken in this run); the decode-time cost of revision; and our
 * greedy batch-1 decode speed against @huggingface/transformers on the same pack (goal >= 2x). Every figure comes
 * from one run, variants interleaved, medians of `rounds`. Works on every shipped VLM pack: a pack without a vision
 * encoder gets a text prompt, and the transformers.js comparison is skipped, with the reason, where it cannot load
 * the pack.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { attentionFlopsPerToken, decoderCost, kvCacheBytes, readModel } from '@libs/onnx-graph';
import { cpuAllotment, loadVlmPack, LocalVlmEngine, type GenerationRequest, type RevisionFeed } from '@libs/vlm';
import { argValue, interleaved } from './_stats';
import { copyBandwidth, matmulFlops } from './_roofline';

export async function run(argv: string[]): Promise<void> {
  const packDir = resolve(argValue(argv, 'pack', 'models/tiny-vlm'));
  const rounds = Number(argValue(argv, 'rounds', '7'));
  const batches = argValue(argv, 'batches', '1,8,32,64').split(',').map(Number);
  const pack = loadVlmPack(packDir);
  // The tiny pack's reference image, else the first of the pack's reference images (models/factory-vlm); none for a
  // pack without a vision encoder (the decoder-layout packs).
  const reference = join(packDir, 'reference');
  const imageFile = existsSync(join(reference, 'image.png')) ? 'image.png' : readdirSync(reference).filter((f) => f.endsWith('.png'))[0];
  const image = pack.files.visionEncoder && imageFile ? readFileSync(join(reference, imageFile)) : undefined;
  const prompt = image ? 'What machine is shown here and is it safe to use?' : 'Is it safe to reach past the guard of a running press?';
  // The probes and both engines on the same threads: what a pod with this CPU allotment runs.
  const threads = cpuAllotment();
  const plain = await LocalVlmEngine.open({ packDir, revisable: false, intraOpNumThreads: threads });
  const revisable = await LocalVlmEngine.open({ packDir, intraOpNumThreads: threads });
  const info = revisable.info();
  console.log(
    `pack ${info.name}: ${info.layers} layers, hidden ${info.hidden}, vocab ${info.vocabSize}; EP ${info.executionProvider}, ${threads} threads; ` +
      `revisable decoder: ${info.revisable}; ${image ? 'image + text prompt' : 'text prompt (no vision encoder)'}`,
  );

  const request = (n: number, extra: Partial<GenerationRequest> = {}): GenerationRequest => ({ prompt, image, maxNewTokens: n, ignoreEos: true, ...extra });
  const batch = (size: number, n: number, extra: Partial<GenerationRequest> = {}) => Array.from({ length: size }, () => request(n, extra));
  const DECODE = 64;

  // Decode time per token = (time for 1 + DECODE tokens - time for 1 token) / DECODE, so prefill cancels out.
  console.log(`\nthroughput (prompt of ${image ? 'one image + question' : 'one question'}):`);
  let batch1Decode = 0;
  const measured = new Map<number, { decodeTokensPerSecond: number; promptTokens: number }>();
  for (const size of batches) {
    let promptTokens = 0;
    const t = await interleaved(
      {
        prefill: async () => {
          promptTokens = (await plain.generate(batch(size, 1)))[0].promptTokens;
        },
        full: () => plain.generate(batch(size, 1 + DECODE)),
      },
      rounds,
    );
    const decodeMs = (t.full - t.prefill) / DECODE;
    if (size === batches[0]) batch1Decode = (1000 * size) / decodeMs;
    measured.set(size, { decodeTokensPerSecond: (size * 1000) / decodeMs, promptTokens });
    console.log(
      `  batch ${size}: prefill ${((size * promptTokens) / (t.prefill / 1000)).toFixed(0)} tokens/s (${promptTokens} tokens/row, ${t.prefill.toFixed(1)} ms)` +
        `, decode ${((size * 1000) / decodeMs).toFixed(0)} tokens/s (${decodeMs.toFixed(2)} ms/step; ${((size * 1000) / decodeMs / batch1Decode).toFixed(2)}x batch ${batches[0]})`,
    );
  }

  roofline(pack.files.decoder, pack.text, measured, DECODE, copyBandwidth(256 * 1024 * 1024), await matmulFlops(threads), threads);
  await kernelsPerStep([pack.files.decoder, ...(pack.files.revisableDecoder ? [pack.files.revisableDecoder] : [])]);

  if (info.revisable) {
    const { layers, hidden, heads, headDim } = info;
    const feed: RevisionFeed = {
      layer: Float32Array.from({ length: layers * hidden }, (_, i) => (i % 7) * 0.01),
      head: Float32Array.from({ length: layers * heads * headDim }, (_, i) => (i % 5) * 0.01),
      positions: 'last',
    };
    const variants = {
      off: (n: number) => plain.generate(batch(8, n)),
      zeros: (n: number) => revisable.generate(batch(8, n)),
      on: (n: number) => revisable.generate(batch(8, n, { revision: feed })),
    };
    const t = await interleaved(
      Object.fromEntries(
        Object.entries(variants).flatMap(([k, fn]) => [
          [`${k}1`, () => fn(1)],
          [`${k}N`, () => fn(1 + DECODE)],
        ]),
      ),
      rounds,
    );
    const decode = (k: string) => t[`${k}N`] - t[`${k}1`];
    console.log(`\nrevision cost (batch 8, decode time of ${DECODE} tokens, prefill subtracted):`);
    console.log(`  revision on / plain decoder:        ${(decode('on') / decode('off')).toFixed(3)}  (goal <= 1.03)`);
    console.log(
      `  revisable engine, no feed / plain: ${(decode('zeros') / decode('off')).toFixed(3)}  (a step without revision runs the plain decoder when VLM_PLAIN_DECODER loads it)`,
    );
  } else {
    console.log('\nrevision cost: skipped, the pack has no revisable decoder (modctl model prepare)');
  }

  try {
    await compareTransformersJs(packDir, image, prompt, rounds, DECODE, (n) => plain.generate([request(n)]));
  } catch (err) {
    console.log(
      `\ngreedy decode vs @huggingface/transformers: skipped, it cannot run this pack (${String((err as Error).message)
        .split('\n')[0]
        .slice(0, 160)})`,
    );
  }
  await plain.close();
  await revisable.close();
}

/**
 * Decode tokens/s against what the machine allows at batch 1 and 32. Memory: each step reads every weight once and
 * each row's cache once, at the copy bandwidth from DRAM and at the weights' own size (a small decoder stays in
 * cache, where the DRAM bound understates what is possible). Compute: each row's weight products plus attention,
 * at the FLOP/s onnxruntime's MatMul reaches here. The context is the prompt plus half the decoded tokens (the mean
 * over the decode).
 */
function roofline(
  decoderPath: string,
  text: { layers: number; heads: number; kvHeads: number; headDim: number },
  measured: Map<number, { decodeTokensPerSecond: number; promptTokens: number }>,
  decoded: number,
  dramBandwidth: number,
  flops: number,
  threads: number,
): void {
  const cost = decoderCost(readModel(decoderPath));
  const cacheBandwidth = copyBandwidth(cost.weightBytes);
  console.log(
    `\nroofline: decoder ${(cost.weightBytes / 1e6).toFixed(2)} MB of weights, ${(cost.matmulFlopsPerToken / 1e6).toFixed(2)} MFLOP per token in weight products;` +
      ` probes: copy ${(dramBandwidth / 1e9).toFixed(1)} GB/s from DRAM (256 MB), ${(cacheBandwidth / 1e9).toFixed(1)} GB/s at the weights' size,` +
      ` MatMul ${(flops / 1e9).toFixed(1)} GFLOP/s on ${threads} threads`,
  );
  for (const size of [1, 32]) {
    const m = measured.get(size);
    if (!m) continue;
    const context = m.promptTokens + decoded / 2;
    const stepBytes = cost.weightBytes + size * kvCacheBytes(text, context);
    const dram = (size * dramBandwidth) / stepBytes;
    const cached = (size * cacheBandwidth) / stepBytes;
    const compute = flops / (cost.matmulFlopsPerToken + attentionFlopsPerToken(text, context));
    const tps = m.decodeTokensPerSecond;
    const goal = size === 1 ? `goal: within 2x of the DRAM bound` : `goal: within 3x of the compute bound`;
    console.log(
      `  batch ${size}: decode ${tps.toFixed(0)} tokens/s; bounds: DRAM ${dram.toFixed(0)} (${(dram / tps).toFixed(2)}x), ` +
        `cache ${cached.toFixed(0)} (${(cached / tps).toFixed(2)}x), compute ${compute.toFixed(0)} (${(compute / tps).toFixed(2)}x)  (${goal})`,
    );
  }
}

/** Ops that compute shapes and indices or only rearrange data (the exported graph's attention plumbing): what a fused graph would not run as kernels of their own. */
const SHAPE_OPS = new Set([
  'Shape',
  'Gather',
  'Unsqueeze',
  'Squeeze',
  'Concat',
  'Reshape',
  'Slice',
  'Cast',
  'Range',
  'ConstantOfShape',
  'Expand',
  'Equal',
  'Where',
  'Greater',
  'LessOrEqual',
  'And',
  'Sub',
  'Transpose',
  'Split',
]);

/**
 * The nodes of the graph onnxruntime runs (its own optimizations applied, written out with optimizedModelFilePath):
 * one kernel each per decode step. The baseline a fused decoder (issue 15 item 2) is measured against.
 */
async function kernelsPerStep(decoders: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ort-optimized-'));
  console.log(`\nkernels per decode step (the graph onnxruntime runs, optimizations applied):`);
  try {
    for (const path of decoders) {
      const out = join(dir, basename(path));
      const session = await InferenceSession.create(path, { graphOptimizationLevel: 'all', optimizedModelFilePath: out, logSeverityLevel: 3 });
      await session.release();
      const nodes = readModel(out).graph.node;
      const counts = new Map<string, number>();
      for (const n of nodes) counts.set(n.op_type, (counts.get(n.op_type) ?? 0) + 1);
      const shape = nodes.filter((n) => SHAPE_OPS.has(n.op_type)).length;
      const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8);
      console.log(
        `  ${basename(path)}: ${readModel(path).graph.node.length} nodes exported, ${nodes.length} kernels; ${shape} of them shape, index and layout ops; ` +
          top.map(([op, n]) => `${op} ${n}`).join(', '),
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function compareTransformersJs(
  packDir: string,
  image: Uint8Array | undefined,
  prompt: string,
  rounds: number,
  DECODE: number,
  ours: (n: number) => Promise<unknown>,
): Promise<void> {
  if (!image) throw new Error('the comparison loads the pack as an image-to-text model; this pack has no vision encoder');
  const hf = await import('@huggingface/transformers');
  hf.env.allowRemoteModels = false;
  hf.env.localModelPath = dirname(packDir) + '/';
  const id = basename(packDir);
  const processor = await hf.AutoProcessor.from_pretrained(id, { local_files_only: true });
  const model = await hf.AutoModelForVision2Seq.from_pretrained(id, { local_files_only: true, dtype: 'fp32', device: 'cpu' });
  const rawImage = await hf.RawImage.fromBlob(new Blob([image]));
  const text = processor.apply_chat_template([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: prompt }] }], { add_generation_prompt: true });
  const inputs = await processor(text, [rawImage]);
  const hfGenerate = (n: number) => model.generate({ ...inputs, max_new_tokens: n, min_new_tokens: n, do_sample: false });
  const t = await interleaved(
    {
      hf1: () => hfGenerate(1),
      hfFull: () => hfGenerate(1 + DECODE),
      ours1: () => ours(1),
      oursFull: () => ours(1 + DECODE),
    },
    rounds,
  );
  const hfStep = (t.hfFull - t.hf1) / DECODE;
  const ourStep = (t.oursFull - t.ours1) / DECODE;
  console.log('\ngreedy decode vs @huggingface/transformers (batch 1, same pack, same prompt):');
  console.log(
    `  transformers.js ${hfStep.toFixed(2)} ms/token, ours ${ourStep.toFixed(2)} ms/token: speed ratio ours/transformers.js = ${(hfStep / ourStep).toFixed(2)} (goal >= 2.0)`,
  );
  console.log(`  whole 65-token generation incl. prefill and image: ratio ${(t.hfFull / t.oursFull).toFixed(2)}`);
  await model.dispose();
}
