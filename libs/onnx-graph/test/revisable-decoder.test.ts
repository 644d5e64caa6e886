/**
 * Pack-level prepare: files and manifest, idempotence, refusals, external data, and the modctl command.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  AlreadyRevisableError,
  ModelProto,
  REVISABLE_FILE,
  REVISABLE_MANIFEST,
  prepareRevisableDecoder,
  readModel,
  readRevisableDecoderInfo,
  sha256File,
  verifyRevisableDecoder,
  writeModel,
} from '@libs/onnx-graph';
import { run as modelCommand } from '../../../apps/modctl/src/commands/model';
import { SMALL, buildGenaiDecoder, buildOptimumDecoder, writePack } from './decoder-fixtures';
import { makeFeeds, openSession, run } from './ort-run';

const root = mkdtempSync(join(tmpdir(), 'onnx-graph-prepare-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let packs = 0;
const newPack = (model: ModelProto) => writePack(join(root, `pack${packs++}`), model);
const onnx = (pack: string, file: string) => join(pack, 'onnx', file);

async function quietly<T>(fn: () => Promise<T>): Promise<{ value: T; out: string; err: string }> {
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const error = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const value = await fn();
    return { value, out: log.mock.calls.map((c) => c.join(' ')).join('\n'), err: error.mock.calls.map((c) => c.join(' ')).join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

describe('prepareRevisableDecoder', () => {
  it('writes the revisable decoder and a manifest tied to the source sha256', async () => {
    const pack = newPack(buildOptimumDecoder());
    const report = await prepareRevisableDecoder(pack);
    expect(report.status).toBe('written');
    const info = readRevisableDecoderInfo(pack)!;
    expect(info.source_sha256).toBe(await sha256File(onnx(pack, 'decoder_model_merged.onnx')));
    expect(info.revisable_sha256).toBe(await sha256File(onnx(pack, REVISABLE_FILE)));
    expect([info.layers, info.hidden, info.heads, info.head_dim, info.residual_style]).toEqual([3, 32, 4, 8, 'add']);
    expect(info.inputs).toEqual({
      revision_layer: ['batch_size', 3, 32],
      revision_head: ['batch_size', 3, 32],
      revision_mask: ['batch_size', 'sequence_length'],
    });
    expect(info.points.map((p) => [p.o_proj, p.residual])).toEqual(
      [0, 1, 2].map((l) => [`/model/layers.${l}/self_attn/o_proj/MatMul`, `/model/layers.${l}/Add_1`]),
    );
    const graph = readModel(onnx(pack, REVISABLE_FILE)).graph;
    const dims = (name: string, list = graph.input) =>
      list.find((v) => v.name === name)!.type!.tensor_type!.shape!.dim.map((d) => d.dim_param || Number(d.dim_value));
    expect(dims('revision_mask')).toEqual(['batch_size', 'sequence_length']);
    expect(dims('tap_head', graph.output)).toEqual(['batch_size', 3, 32]);
    expect((await verifyRevisableDecoder(pack)).ok).toBe(true);
  });

  it('does nothing when the revisable decoder is up to date, rebuilds when the source changes', async () => {
    const pack = newPack(buildGenaiDecoder());
    expect((await prepareRevisableDecoder(pack)).status).toBe('written');
    const before = statSync(onnx(pack, REVISABLE_FILE)).mtimeMs;
    const bytes = readFileSync(onnx(pack, REVISABLE_FILE));
    expect((await prepareRevisableDecoder(pack)).status).toBe('up-to-date');
    expect(statSync(onnx(pack, REVISABLE_FILE)).mtimeMs).toBe(before);
    // Deterministic: forcing a rebuild gives the same bytes.
    expect((await prepareRevisableDecoder(pack, { force: true })).status).toBe('written');
    expect(readFileSync(onnx(pack, REVISABLE_FILE)).equals(bytes)).toBe(true);

    writeModel(onnx(pack, 'decoder_model_merged.onnx'), buildGenaiDecoder({ ...SMALL, seed: 99 }));
    const check = await verifyRevisableDecoder(pack);
    expect(check.ok).toBe(false);
    expect(check.reason).toMatch(/changed since the revisable decoder was prepared/);
    expect((await prepareRevisableDecoder(pack)).status).toBe('written');
    expect((await verifyRevisableDecoder(pack)).ok).toBe(true);
  });

  it('refuses a source decoder that is already revisable', async () => {
    const pack = newPack(buildOptimumDecoder());
    await prepareRevisableDecoder(pack);
    copyFileSync(onnx(pack, REVISABLE_FILE), onnx(pack, 'decoder_model_merged.onnx'));
    await expect(prepareRevisableDecoder(pack)).rejects.toThrow(AlreadyRevisableError);
  });

  it('refuses a broken decoder and writes nothing', async () => {
    const model = buildOptimumDecoder();
    model.graph.node.find((n) => n.name === '/model/layers.1/Add_1')!.op_type = 'Sub';
    const pack = newPack(model);
    await expect(prepareRevisableDecoder(pack)).rejects.toThrow(/layer 1: attention merge '\/model\/layers.1\/Add'.*not followed by an MLP residual merge/);
    expect(readdirSync(join(pack, 'onnx'))).toEqual(['decoder_model_merged.onnx']);
  });

  it('leaves external data alone: never reads it, keeps the references', async () => {
    const model = buildOptimumDecoder();
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const t of model.graph.initializer) {
      if (t.data_type !== 1 || !t.raw_data || t.raw_data.byteLength < 256) continue;
      const data = Buffer.from(t.raw_data);
      chunks.push(data);
      t.raw_data = undefined;
      t.data_location = 1;
      t.external_data = [
        { key: 'location', value: 'decoder_model_merged.onnx_data' },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(data.byteLength) },
      ];
      offset += data.byteLength;
    }
    expect(chunks.length).toBeGreaterThan(10);
    const pack = newPack(model);
    // No .onnx_data file exists while preparing: reading it would fail.
    expect((await prepareRevisableDecoder(pack)).status).toBe('written');
    const external = (m: ModelProto) =>
      m.graph.initializer.filter((t) => t.data_location === 1).map((t) => [t.name, t.external_data.map((e) => `${e.key}=${e.value}`), t.raw_data?.length ?? 0]);
    expect(external(readModel(onnx(pack, REVISABLE_FILE)))).toEqual(external(model));
    expect(statSync(onnx(pack, REVISABLE_FILE)).size).toBeLessThan(statSync(onnx(pack, 'decoder_model_merged.onnx')).size + 16_000);

    writeFileSync(onnx(pack, 'decoder_model_merged.onnx_data'), Buffer.concat(chunks));
    const a = await openSession(onnx(pack, 'decoder_model_merged.onnx'));
    const b = await openSession(onnx(pack, REVISABLE_FILE));
    const shape = { batch: 1, seq: 3, past: 1 };
    const outA = await run(a, makeFeeds(a, SMALL, shape));
    const outB = await run(b, makeFeeds(b, SMALL, shape));
    expect(Buffer.from(outB.logits.buffer).equals(Buffer.from(outA.logits.buffer))).toBe(true);
  });
});

describe('modctl model prepare', () => {
  it('prints the points it used, then says it is up to date', async () => {
    const pack = newPack(buildGenaiDecoder(SMALL, { nbitsOProj: [0] }));
    const first = await quietly(() => modelCommand(['prepare', pack]));
    expect(first.value).toBe(0);
    expect(first.out).toContain('input of /model/layers.0/attn/o_proj/MatMulNBits');
    expect(first.out).toContain('after /model/layers.3/final_norm_layernorm/SkipLayerNorm');
    const second = await quietly(() => modelCommand(['prepare', pack]));
    expect(second.value).toBe(0);
    expect(second.out).toMatch(/is up to date .*nothing to do/);
    expect((await quietly(() => modelCommand(['verify', pack]))).value).toBe(0);
  });

  it('exits non-zero with the reason on a refused decoder', async () => {
    const model = buildOptimumDecoder();
    model.graph.node.find((n) => n.name === '/model/layers.2/Add_1')!.op_type = 'Sub';
    const pack = newPack(model);
    const res = await quietly(() => modelCommand(['prepare', pack]));
    expect(res.value).toBe(1);
    expect(res.err).toMatch(/refused, nothing written: layer 2: attention merge/);
    expect(existsSync(onnx(pack, REVISABLE_MANIFEST))).toBe(false);
    expect((await quietly(() => modelCommand(['prepare']))).value).toBe(2);
  });
});
