/** Every shipped pack's files match the sha256 its builder recorded (tools/modelzoo writes manifest.json). */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256File } from '@libs/vlm';

const MODELS = resolve(__dirname, '../../../models');
const packs = readdirSync(MODELS).filter((d) => existsSync(join(MODELS, d, 'manifest.json')));

describe('model pack manifests', () => {
  it('cover the shipped packs', () => {
    expect(packs).toEqual(expect.arrayContaining(['tiny-vlm', 'tiny-clip', 'tiny-guard']));
  });

  it.each(packs)('%s: files match their recorded sha256', (pack) => {
    const manifest = JSON.parse(readFileSync(join(MODELS, pack, 'manifest.json'), 'utf8')) as { files: Record<string, string> };
    expect(Object.keys(manifest.files).length).toBeGreaterThan(0);
    for (const [file, sha] of Object.entries(manifest.files)) expect(sha256File(join(MODELS, pack, file)), `${pack}/${file}`).toBe(sha);
  });
});
