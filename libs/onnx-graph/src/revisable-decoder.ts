/**
 * Pack-level `model prepare`: writes onnx/decoder_model_merged_revisable.onnx and a JSON manifest beside the
 * original decoder. The manifest ties the revisable graph to the sha256 of the source graph (the "decoder
 * fingerprint" revision artifacts are computed against), which also makes preparing idempotent.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DecoderLayout } from './decoder-layout';
import { findDecoderStructure, readTextConfig } from './decoder-structure';
import { readModel, sha256Bytes, sha256File, writeModel } from './onnx-proto';
import { AlreadyRevisableError, LayerPointReport, addRevisionPoints, isRevisable } from './revision-surgery';

export const DECODER_FILE = 'decoder_model_merged.onnx';
export const REVISABLE_FILE = 'decoder_model_merged_revisable.onnx';
export const REVISABLE_MANIFEST = 'decoder_model_merged_revisable.json';
export const REVISABLE_FORMAT = 'onnx-graph/revisable-decoder@1';

export interface RevisableDecoderInfo {
  format: typeof REVISABLE_FORMAT;
  /** File names relative to the pack's onnx/ folder. */
  source: string;
  /** sha256 of the source graph file: the decoder fingerprint. External weight files are not part of it. */
  source_sha256: string;
  revisable: string;
  revisable_sha256: string;
  residual_style: 'add' | 'skip-norm';
  /** What kind of decoder it is (absent in manifests written before layouts were reported). */
  layout?: DecoderLayout;
  layers: number;
  hidden: number;
  heads: number;
  head_dim: number;
  inputs: Record<'revision_layer' | 'revision_head' | 'revision_mask', Array<string | number>>;
  outputs: Record<'tap_layer' | 'tap_head', Array<string | number>>;
  points: LayerPointReport[];
}

export interface PrepareOptions {
  /** Rebuild even when the manifest says the revisable decoder is up to date. */
  force?: boolean;
  /** Find the insertion points and report them, write nothing. */
  dryRun?: boolean;
}

export interface PrepareReport {
  status: 'written' | 'up-to-date' | 'dry-run';
  info: RevisableDecoderInfo;
  revisablePath: string;
  manifestPath: string;
  ms: number;
}

const onnxDir = (packDir: string) => join(packDir, 'onnx');

/** The manifest of a pack's revisable decoder, or undefined when the pack has none. Cheap: no hashing. */
export function readRevisableDecoderInfo(packDir: string): RevisableDecoderInfo | undefined {
  const path = join(onnxDir(packDir), REVISABLE_MANIFEST);
  if (!existsSync(path)) return undefined;
  const info = JSON.parse(readFileSync(path, 'utf8')) as RevisableDecoderInfo;
  if (info.format !== REVISABLE_FORMAT) throw new Error(`${path}: unknown format '${info.format}', expected ${REVISABLE_FORMAT}`);
  return info;
}

/** An unreadable or foreign manifest just means "rebuild". */
function readManifestIfValid(packDir: string): RevisableDecoderInfo | undefined {
  try {
    return readRevisableDecoderInfo(packDir);
  } catch {
    return undefined;
  }
}

export interface RevisableDecoderCheck {
  ok: boolean;
  reason?: string;
  info?: RevisableDecoderInfo;
}

/** Hashes both graphs: a runtime should refuse a revisable decoder whose source changed since it was prepared. */
export async function verifyRevisableDecoder(packDir: string): Promise<RevisableDecoderCheck> {
  const info = readRevisableDecoderInfo(packDir);
  if (!info) return { ok: false, reason: `no ${REVISABLE_MANIFEST}: run 'modctl model prepare ${packDir}'` };
  const dir = onnxDir(packDir);
  const source = join(dir, info.source);
  const revisable = join(dir, info.revisable);
  if (!existsSync(source)) return { ok: false, reason: `${source} is missing`, info };
  if (!existsSync(revisable)) return { ok: false, reason: `${revisable} is missing`, info };
  if ((await sha256File(source)) !== info.source_sha256) {
    return { ok: false, reason: `${info.source} changed since the revisable decoder was prepared`, info };
  }
  if ((await sha256File(revisable)) !== info.revisable_sha256) {
    return { ok: false, reason: `${info.revisable} does not match its manifest`, info };
  }
  return { ok: true, info };
}

export async function prepareRevisableDecoder(packDir: string, opts: PrepareOptions = {}): Promise<PrepareReport> {
  const started = Date.now();
  const dir = onnxDir(packDir);
  const sourcePath = join(dir, DECODER_FILE);
  const revisablePath = join(dir, REVISABLE_FILE);
  const manifestPath = join(dir, REVISABLE_MANIFEST);
  if (!existsSync(sourcePath)) throw new Error(`${sourcePath} not found`);
  const sourceSha = await sha256File(sourcePath);

  if (!opts.force && !opts.dryRun) {
    const current = readManifestIfValid(packDir);
    if (current?.source_sha256 === sourceSha && existsSync(revisablePath) && (await sha256File(revisablePath)) === current.revisable_sha256) {
      return { status: 'up-to-date', info: current, revisablePath, manifestPath, ms: Date.now() - started };
    }
  }

  const model = readModel(sourcePath);
  if (isRevisable(model)) {
    throw new AlreadyRevisableError(`${sourcePath} already has revision_* inputs; prepare needs the original decoder`);
  }
  const structure = findDecoderStructure(model, { config: readTextConfig(packDir) });
  const points = addRevisionPoints(model, structure);
  model.metadata_props = [
    ...(model.metadata_props ?? []).filter((p) => p.key !== 'revision.source_sha256'),
    { key: 'revision.source_sha256', value: sourceSha },
  ];

  const layers = structure.layers.length;
  const info: RevisableDecoderInfo = {
    format: REVISABLE_FORMAT,
    source: DECODER_FILE,
    source_sha256: sourceSha,
    revisable: REVISABLE_FILE,
    revisable_sha256: '',
    residual_style: structure.residualStyle,
    layout: structure.layout,
    layers,
    hidden: structure.hidden,
    heads: structure.heads,
    head_dim: structure.headDim,
    inputs: {
      revision_layer: [structure.batchDim, layers, structure.hidden],
      revision_head: [structure.batchDim, layers, structure.heads * structure.headDim],
      revision_mask: [structure.batchDim, structure.seqDim],
    },
    outputs: {
      tap_layer: [structure.batchDim, layers, structure.hidden],
      tap_head: [structure.batchDim, layers, structure.heads * structure.headDim],
    },
    points,
  };
  if (opts.dryRun) return { status: 'dry-run', info, revisablePath, manifestPath, ms: Date.now() - started };

  const bytes = writeModel(revisablePath, model);
  info.revisable_sha256 = sha256Bytes(bytes);
  const tmp = `${manifestPath}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`);
  renameSync(tmp, manifestPath);
  return { status: 'written', info, revisablePath, manifestPath, ms: Date.now() - started };
}
