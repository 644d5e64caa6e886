/**
 * Decoder weight interpolation between two packs with identical graphs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  MergeMismatchError,
  ModelProto,
  TensorProto,
  mergeDecoders,
  prepareRevisableDecoder,
  readModel,
  readRevisableDecoderInfo,
  sha256File,
} from '@libs/onnx-graph';
import { run as mergeCommand } from '../../../apps/modctl/src/commands/merge';
import { SMALL, buildGenaiDecoder, buildOptimumDecoder, writePack } from './decoder-fixtures';

const root = mkdtempSync(join(tmpdir(), 'onnx-graph-merge-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const pack = (model: ModelProto) => writePack(join(root, `in${n++}`), model);
const out = () => join(root, `out${n++}`);
const decoder = (dir: string) => readModel(join(dir, 'onnx', 'decoder_model_merged.onnx'));
const byName = (m: ModelProto) => new Map(m.graph.initializer.map((t) => [t.name!, t]));

/** Float32 values straight from the tensor, independent of the library's readers. */
function f32(t: TensorProto): Float32Array {
  if (t.raw_data && t.raw_data.byteLength) return new Float32Array(Uint8Array.from(t.raw_data).buffer);
  return Float32Array.from(t.float_data);
}
const bytes = (t: TensorProto) => Buffer.from(f32(t).buffer);

// Same graph, different weights; norm gammas in float_data to cover the legacy field.
const floatData = (name: string) => name.endsWith('layernorm.weight');
const A = buildOptimumDecoder(SMALL, { floatDataFor: floatData });
const B = buildOptimumDecoder({ ...SMALL, seed: 8 }, { floatDataFor: floatData });
const packA = pack(A);
const packB = pack(B);

describe('mergeDecoders', () => {
  it('weight 0 and 1 reproduce A and B byte for byte', async () => {
    for (const [w, expected] of [
      [0, A],
      [1, B],
    ] as const) {
      const dir = out();
      await mergeDecoders(packA, packB, dir, { weight: w });
      const merged = byName(decoder(dir));
      for (const t of expected.graph.initializer) expect(bytes(merged.get(t.name!)!).equals(bytes(t)), `${w}:${t.name}`).toBe(true);
    }
  });

  it('weight 0.5 is the element-wise mean, in the storage form of A', async () => {
    const dir = out();
    const report = await mergeDecoders(packA, packB, dir, { weight: 0.5 });
    const merged = byName(decoder(dir));
    const bByName = byName(B);
    let checked = 0;
    for (const ta of A.graph.initializer) {
      if (ta.data_type !== 1) continue;
      const a = f32(ta);
      const b = f32(bByName.get(ta.name!)!);
      const mean = a.map((x, i) => Math.fround((x + b[i]) / 2));
      const m = merged.get(ta.name!)!;
      expect(Buffer.from(f32(m).buffer).equals(Buffer.from(mean.buffer)), ta.name).toBe(true);
      expect(m.float_data.length > 0).toBe(floatData(ta.name!));
      checked++;
    }
    expect(checked).toBeGreaterThan(20);
    expect(report.merged.length).toBeGreaterThan(20);
    expect(report.decoderSha256).toBe(await sha256File(join(dir, 'onnx', 'decoder_model_merged.onnx')));
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe(readFileSync(join(packA, 'config.json'), 'utf8'));
  });

  it('--layers touches only initializers of those layers', async () => {
    const dir = out();
    await mergeDecoders(packA, packB, dir, { weight: 0.5, layers: [1] });
    const merged = byName(decoder(dir));
    const bByName = byName(B);
    for (const ta of A.graph.initializer) {
      if (ta.data_type !== 1) continue;
      const same = bytes(merged.get(ta.name!)!).equals(bytes(ta));
      const differs = !bytes(ta).equals(bytes(bByName.get(ta.name!)!));
      const inLayer1 = ta.name!.startsWith('model.layers.1.');
      expect(same, ta.name).toBe(!(inLayer1 && differs));
    }
    await expect(mergeDecoders(packA, packB, out(), { weight: 0.5, layers: [3] })).rejects.toThrow(/layer 3 does not exist \(the decoder has 3\)/);
  });

  it('refuses decoders whose graphs differ, and writes nothing', async () => {
    const cases: Array<[ModelProto, RegExp]> = [
      [buildOptimumDecoder(SMALL, { oProjBias: true }), /node count differs|node \d+ differs/],
      [buildOptimumDecoder({ ...SMALL, intermediate: 40 }), /graph inputs differ|shape \[32x48\] in A, \[32x40\] in B/],
      [
        (() => {
          const m = buildOptimumDecoder(SMALL, { floatDataFor: floatData });
          m.graph.node.find((x) => x.name === '/model/layers.0/self_attn/Softmax')!.op_type = 'LogSoftmax';
          return m;
        })(),
        /node \d+ differs: A Softmax '\/model\/layers.0\/self_attn\/Softmax'.* vs B LogSoftmax/,
      ],
      [
        (() => {
          const m = buildOptimumDecoder(SMALL, { floatDataFor: floatData });
          m.graph.initializer.find((t) => t.name === 'lm_head.weight')!.data_type = 11;
          return m;
        })(),
        /initializer 'lm_head.weight': type 1 in A, 11 in B/,
      ],
    ];
    for (const [other, message] of cases) {
      const dir = out();
      const err = await mergeDecoders(packA, pack(other), dir, { weight: 0.5 }).catch((e) => e);
      expect(err).toBeInstanceOf(MergeMismatchError);
      expect(err.message).toMatch(message);
      expect(existsSync(dir)).toBe(false);
    }
  });

  it('refuses to interpolate differing quantized (non-float) weights', async () => {
    const a = pack(buildGenaiDecoder(SMALL, { nbitsOProj: [0] }));
    const b = pack(buildGenaiDecoder({ ...SMALL, seed: 12 }, { nbitsOProj: [0] }));
    await expect(mergeDecoders(a, b, out(), { weight: 0.5 })).rejects.toThrow(/non-float initializer 'model.layers.0.attn.o_proj.qweight' \(type 2\) differs/);
  });

  it('rebuilds the revisable decoder of the output when A has one', async () => {
    const a = pack(buildGenaiDecoder());
    const b = pack(buildGenaiDecoder({ ...SMALL, seed: 21 }));
    await prepareRevisableDecoder(a);
    const dir = out();
    const report = await mergeDecoders(a, b, dir, { weight: 0.25 });
    expect(report.revisable).toBe(true);
    expect(readRevisableDecoderInfo(dir)!.source_sha256).toBe(report.decoderSha256);
    expect(readRevisableDecoderInfo(dir)!.source_sha256).not.toBe(readRevisableDecoderInfo(a)!.source_sha256);
  });
});

describe('modctl merge', () => {
  it('merges, refuses an existing output, and reports mismatches with exit 1', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const dir = out();
      expect(await mergeCommand(['--a', packA, '--b', packB, '--weight', '0.5', '--layers', '0,2', '--out', dir])).toBe(0);
      expect(log.mock.calls.flat().join('\n')).toMatch(/merged \d+ float initializers with w=0.5 \(layers 0,2\)/);
      await expect(mergeCommand(['--a', packA, '--b', packB, '--weight', '0.5', '--out', dir])).rejects.toThrow(/exists and is not empty/);
      const bad = pack(buildOptimumDecoder(SMALL, { oProjBias: true }));
      expect(await mergeCommand(['--a', packA, '--b', bad, '--weight', '0.5', '--out', out()])).toBe(1);
      expect(error.mock.calls.flat().join('\n')).toMatch(/merge refused, nothing written/);
      expect(await mergeCommand(['--a', packA, '--weight', 'x', '--out', out()])).toBe(2);
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
  });
});
