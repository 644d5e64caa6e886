/**
 * `npm run bench -- runtime [--pack models/tiny-vlm] [--rounds 7] [--batches 1,8,32,64]`
 * Prefill and decode tokens/s at each batch size (the batch-scaling curve, through the continuous-batching
 * scheduler), the decode-time cost of revision, and our greedy batch-1 decode speed against
 * @huggingface/transformers on the same pack (goal >= 2x). Every figure comes from one run, variants
 * interleaved, medians of `rounds`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { LocalVlmEngine, type GenerationRequest, type RevisionFeed } from '@libs/vlm';
import { argValue, interleaved } from './_stats';

export async function run(argv: string[]): Promise<void> {
  const packDir = resolve(argValue(argv, 'pack', 'models/tiny-vlm'));
  const rounds = Number(argValue(argv, 'rounds', '7'));
  const batches = argValue(argv, 'batches', '1,8,32,64').split(',').map(Number);
  // The tiny pack's reference image, else the first of the pack's reference images (models/factory-vlm).
  const reference = join(packDir, 'reference');
  const imageFile = existsSync(join(reference, 'image.png')) ? 'image.png' : readdirSync(reference).filter((f) => f.endsWith('.png'))[0];
  const image = readFileSync(join(reference, imageFile));
  const prompt = 'What machine is shown here and is it safe to use?';
  const plain = await LocalVlmEngine.open({ packDir, revisable: false });
  const revisable = await LocalVlmEngine.open({ packDir });
  const info = revisable.info();
  console.log(
    `pack ${info.name}: ${info.layers} layers, hidden ${info.hidden}, vocab ${info.vocabSize}; EP ${info.executionProvider}; revisable decoder: ${info.revisable}`,
  );

  const request = (n: number, extra: Partial<GenerationRequest> = {}): GenerationRequest => ({ prompt, image, maxNewTokens: n, ignoreEos: true, ...extra });
  const batch = (size: number, n: number, extra: Partial<GenerationRequest> = {}) => Array.from({ length: size }, () => request(n, extra));
  const DECODE = 64;

  // Decode time per token = (time for 1 + DECODE tokens - time for 1 token) / DECODE, so prefill cancels out.
  console.log('\nthroughput (prompt of one image + question):');
  let batch1Decode = 0;
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
    console.log(
      `  batch ${size}: prefill ${((size * promptTokens) / (t.prefill / 1000)).toFixed(0)} tokens/s (${promptTokens} tokens/row, ${t.prefill.toFixed(1)} ms)` +
        `, decode ${((size * 1000) / decodeMs).toFixed(0)} tokens/s (${decodeMs.toFixed(2)} ms/step; ${((size * 1000) / decodeMs / batch1Decode).toFixed(2)}x batch ${batches[0]})`,
    );
  }

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
    console.log(`  revisable decoder, no feed / plain: ${(decode('zeros') / decode('off')).toFixed(3)}`);
  } else {
    console.log('\nrevision cost: skipped, the pack has no revisable decoder (modctl model prepare)');
  }

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
      ours1: () => plain.generate([request(1)]),
      oursFull: () => plain.generate([request(1 + DECODE)]),
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
  await plain.close();
  await revisable.close();
}
