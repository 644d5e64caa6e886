/**
 * `modctl model prepare|verify --json`: success and refusal are both one JSON document, never a line of text, and a
 * refusal names the layer and the reason as fields (a script should not have to parse the message).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ModelProto, REVISABLE_MANIFEST } from '@libs/onnx-graph';
import { run as modelCommand } from '../../../apps/modctl/src/commands/model';
import { buildOptimumDecoder, writePack } from './decoder-fixtures';

const root = mkdtempSync(join(tmpdir(), 'onnx-graph-json-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let packs = 0;
const newPack = (model: ModelProto) => writePack(join(root, `pack${packs++}`), model);

async function captured(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const error = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const code = await modelCommand(argv);
    return { code, out: log.mock.calls.map((c) => c.join(' ')), err: error.mock.calls.map((c) => c.join(' ')) };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

/** The whole of a stream must be one JSON value: a stray text line would make this throw. */
const onlyJson = (lines: string[]) => JSON.parse(lines.join('\n'));

function brokenAtLayer2(): ModelProto {
  const model = buildOptimumDecoder();
  model.graph.node.find((n) => n.name === '/model/layers.2/Add_1')!.op_type = 'Sub';
  return model;
}

describe('modctl model --json', () => {
  it('a refused decoder is a JSON error with the layer and the reason as fields, and nothing written', async () => {
    const pack = newPack(brokenAtLayer2());
    const res = await captured(['prepare', pack, '--json']);
    expect(res.code).toBe(1);
    expect(res.out).toEqual([]);
    const { error } = onlyJson(res.err);
    expect(error.code).toBe('decoder_structure');
    expect(error.layer).toBe(2);
    expect(error.reason).toMatch(/^attention merge '\/model\/layers.2\/Add' \(Add\) is not followed by an MLP residual merge/);
    expect(error.pack).toBe(pack);
    expect(error.written).toBe(false);
    expect(existsSync(join(pack, 'onnx', REVISABLE_MANIFEST))).toBe(false);
  });

  it('a refusal that concerns no single layer says so with layer null', async () => {
    const model = buildOptimumDecoder();
    model.graph.input = model.graph.input.filter((v) => v.name !== 'inputs_embeds');
    const res = await captured(['prepare', newPack(model), '--json']);
    expect(res.code).toBe(1);
    const { error } = onlyJson(res.err);
    expect(error.code).toBe('decoder_structure');
    expect(error.layer).toBeNull();
    expect(error.reason).toMatch(/no residual stream start/);
  });

  it('success is one JSON document with the points and the layout', async () => {
    const pack = newPack(buildOptimumDecoder());
    const res = await captured(['prepare', pack, '--json']);
    expect(res.code).toBe(0);
    const report = onlyJson(res.out);
    expect(report.status).toBe('written');
    expect(report.points).toHaveLength(3);
    expect(report.layout).toMatchObject({ residual: 'add', attention_output: 'o_proj', o_proj_op: 'MatMul', activation_type: 'float32' });
    expect(onlyJson((await captured(['prepare', pack, '--json'])).out).status).toBe('up-to-date');
  });

  it('verify --json answers in JSON, ok or not', async () => {
    const pack = newPack(buildOptimumDecoder());
    const missing = await captured(['verify', pack, '--json']);
    expect(missing.code).toBe(1);
    const { error } = onlyJson(missing.err);
    expect(error.code).toBe('not_prepared');
    expect(error.message).toMatch(/no decoder_model_merged_revisable.json/);
    await captured(['prepare', pack]);
    const ok = await captured(['verify', pack, '--json']);
    expect(ok.code).toBe(0);
    expect(onlyJson(ok.out)).toMatchObject({ ok: true, pack });
  });

  it('through the real CLI process: stdout empty, stderr one JSON line, exit 1', () => {
    const pack = newPack(brokenAtLayer2());
    const repo = resolve(__dirname, '../../..');
    const res = spawnSync(process.execPath, ['-r', '@swc-node/register', 'apps/modctl/src/main.ts', 'model', 'prepare', pack, '--json'], {
      cwd: repo,
      encoding: 'utf8',
    });
    expect(res.status).toBe(1);
    expect(res.stdout).toBe('');
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]).error).toMatchObject({ code: 'decoder_structure', layer: 2 });
    // And success on stdout, parseable as a whole.
    const ok = newPack(buildOptimumDecoder());
    const out = execFileSync(process.execPath, ['-r', '@swc-node/register', 'apps/modctl/src/main.ts', 'model', 'prepare', ok, '--json', '--dry-run'], {
      cwd: repo,
      encoding: 'utf8',
    });
    expect(JSON.parse(out).status).toBe('dry-run');
  });
});
