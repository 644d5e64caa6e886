/** The shipped tiny VLM pack, copied to a temp folder and made revisable there (the repo copy is left alone). */
import { cpSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO = resolve(__dirname, '../../..');
export const TINY_VLM = join(REPO, 'models/tiny-vlm');
export const FIXTURES = join(__dirname, 'fixtures');

export function runtimeAvailable(): boolean {
  return existsSync(join(REPO, 'libs/vlm/src/index.ts')) && existsSync(join(TINY_VLM, 'onnx/decoder_model_merged.onnx'));
}

export async function revisableTinyPack(): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), 'tiny-vlm-')), 'tiny-vlm');
  cpSync(TINY_VLM, dir, { recursive: true });
  const { prepareRevisableDecoder } = await import('@libs/onnx-graph');
  await prepareRevisableDecoder(dir);
  return dir;
}
