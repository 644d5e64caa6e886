/**
 * `modctl model prepare` on packs of every layout whose weights live in external data that is NOT present (as when
 * an operator prepares a checkout of a large export's graph file only): written from structure alone, idempotent
 * and deterministic, the report names the points and the sandwich norms, `--json` carries the layout; and refusals
 * on these layouts still name the layer.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ModelProto, REVISABLE_FILE, findDecoderStructure, prepareRevisableDecoder, readModel, writeModel } from '@libs/onnx-graph';
import { run as modelCommand } from '../../../apps/modctl/src/commands/model';
import { LAYOUTS, LAYOUT_SPEC, LayoutOptions, buildLayoutDecoder, layoutConfig, layoutName } from './layout-fixtures';

const root = mkdtempSync(join(tmpdir(), 'onnx-graph-layouts-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let packs = 0;

/** Moves every initializer of 64 bytes or more to a `.onnx_data` file that is then not written. */
function externalize(model: ModelProto): number {
  let offset = 0;
  let moved = 0;
  for (const t of model.graph.initializer) {
    if (!t.raw_data || t.raw_data.byteLength < 64) continue;
    const length = t.raw_data.byteLength;
    t.raw_data = undefined;
    t.data_location = 1;
    t.external_data = [
      { key: 'location', value: 'decoder_model_merged.onnx_data' },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ];
    offset += length;
    moved++;
  }
  return moved;
}

function pack(model: ModelProto, o: LayoutOptions): string {
  const dir = join(root, `pack${packs++}`);
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(layoutConfig(LAYOUT_SPEC, o)));
  writeModel(join(dir, 'onnx', 'decoder_model_merged.onnx'), model);
  return dir;
}

async function captured(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const error = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const code = await modelCommand(argv);
    return { code, out: log.mock.calls.map((c) => c.join(' ')).join('\n'), err: error.mock.calls.map((c) => c.join(' ')).join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

describe.each(LAYOUTS.map((o) => ({ o, name: layoutName(o) })))('model prepare, layout $name, weights in absent external data', ({ o }) => {
  it('writes the revisable decoder from structure alone, idempotently, and says what it changed', async () => {
    const model = buildLayoutDecoder(o);
    expect(externalize(model)).toBeGreaterThan(10);
    const dir = pack(model, o);
    const first = await captured(['prepare', dir]);
    expect(first.code, first.err).toBe(0);
    expect(first.out).toMatch(/layout: attention (Softmax|GroupQueryAttention) -> o_proj/);
    for (let l = 0; l < LAYOUT_SPEC.layers; l++) {
      const line = first.out.split('\n').find((s) => s.startsWith(`  layer ${l}:`))!;
      expect(line).toMatch(/head revision \+ tap_head on '.*' \(input of \/model\/layers\.\d\/(self_)?attn\/o_proj\//);
      if (o.sandwich) expect(line).toContain(`renormalised by /model/layers.${l}/post_attention_layernorm/`);
      else expect(line).not.toContain('renormalised');
    }
    expect(readdirSync(join(dir, 'onnx')).sort()).toEqual(['decoder_model_merged.onnx', 'decoder_model_merged_revisable.json', REVISABLE_FILE]);
    const external = (m: ModelProto) => m.graph.initializer.filter((t) => t.data_location === 1).map((t) => [t.name, t.external_data.map((e) => e.value)]);
    expect(external(readModel(join(dir, 'onnx', REVISABLE_FILE)))).toEqual(external(model));
    const bytes = readFileSync(join(dir, 'onnx', REVISABLE_FILE));

    const again = await captured(['prepare', dir, '--json']);
    expect(JSON.parse(again.out).status).toBe('up-to-date');
    const forced = await captured(['prepare', dir, '--force', '--json']);
    const report = JSON.parse(forced.out);
    expect(report.status).toBe('written');
    expect(report.layout.attention_output).toBe(o.sandwich ? 'o_proj+post-norm' : 'o_proj');
    expect(report.points.map((p: { post_attention_norm: string | null }) => p.post_attention_norm !== null)).toEqual(
      Array(LAYOUT_SPEC.layers).fill(!!o.sandwich),
    );
    expect(readFileSync(join(dir, 'onnx', REVISABLE_FILE)).equals(bytes)).toBe(true);
  });

  it('refuses, naming the layer, when a layer of this layout is broken', async () => {
    const model = buildLayoutDecoder(o);
    // Break layer 1's attention output: a non-linear op between o_proj (or its post-norm) and the merge.
    const s = findDecoderStructure(model, {});
    const merge = s.layers[1].attention;
    const tanh = { name: '/model/layers.1/broken/Tanh', op_type: 'Tanh', input: [merge.branchInput], output: ['broken_out'], attribute: [] };
    model.graph.node.splice(model.graph.node.indexOf(merge.node), 0, tanh);
    merge.node.input[merge.branchIndex] = 'broken_out';
    const dir = pack(model, o);
    const res = await captured(['prepare', dir, '--json']);
    expect(res.code).toBe(1);
    const { error } = JSON.parse(res.err);
    expect(error).toMatchObject({ code: 'decoder_structure', layer: 1, written: false });
    expect(error.reason).toContain("from '/model/layers.1/broken/Tanh' (Tanh)");
    await expect(prepareRevisableDecoder(dir)).rejects.toThrow(/^layer 1: /);
  });
});

describe('model prepare at the depth of a real export', () => {
  it('a 34-layer genai Gemma 3 decoder (the shape issue 13 was refused on), weights absent: every layer found, in seconds', async () => {
    const o: LayoutOptions = { style: 'genai', sandwich: true, attentionAdd: true, qkNorm: true, slidingWindow: 2 };
    const spec = { ...LAYOUT_SPEC, layers: 34 };
    const model = buildLayoutDecoder(o, spec);
    externalize(model);
    const dir = join(root, `pack${packs++}`);
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(layoutConfig(spec, o)));
    writeModel(join(dir, 'onnx', 'decoder_model_merged.onnx'), model);
    const started = Date.now();
    const report = await prepareRevisableDecoder(dir);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(report.info.layers).toBe(34);
    expect(report.info.points.every((p) => p.post_attention_norm?.includes('post_attention_layernorm'))).toBe(true);
    expect(report.info.layout!.sliding_window_layers).toEqual(Array.from({ length: 17 }, (_, i) => 2 * i));
  });
});
