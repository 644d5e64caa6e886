/**
 * `modctl merge`: out = (1-w)*A + w*B over the float initializers of two decoders with identical graphs
 * (Lee et al., ICLR 2025: safety-aligned checkpoint x vision-language-adapted checkpoint).
 *
 * Anything that is not the same graph is refused rather than merged: interpolating weights of different graphs
 * gives a model that loads and runs but means nothing. Non-float initializers (shape constants, quantized weights)
 * must be equal, since there is no meaningful interpolation of packed integers.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { findDecoderStructure, readTextConfig } from './decoder-structure';
import { GraphIndex } from './graph-index';
import { GraphProto, ModelProto, encodeMessage, isExternal, readModel, sha256Bytes, writeModel } from './onnx-proto';
import { DECODER_FILE, REVISABLE_FILE, REVISABLE_MANIFEST, prepareRevisableDecoder } from './revisable-decoder';
import { FLOAT_TYPES, readFloatValues, tensorPayload, withFloatValues } from './tensor-data';

export class MergeMismatchError extends Error {}

export interface MergeOptions {
  weight: number;
  /** Merge only initializers used exclusively by these decoder layers; all others come from A. */
  layers?: number[];
}

export interface MergeStats {
  merged: string[];
  /** Float initializers equal in A and B (copied). */
  identical: number;
  /** Float initializers left as A's because they are outside --layers. */
  keptFromA: number;
  nonFloat: number;
}

function describeValueInfos(g: GraphProto, which: 'input' | 'output'): string[] {
  return g[which].map((v) => Buffer.from(encodeMessage('ValueInfoProto', { ...v, doc_string: undefined })).toString('base64'));
}

function assertSameGraph(a: ModelProto, b: ModelProto): void {
  const ga = a.graph;
  const gb = b.graph;
  for (const which of ['input', 'output'] as const) {
    const da = describeValueInfos(ga, which);
    const db = describeValueInfos(gb, which);
    const i = da.findIndex((x, k) => x !== db[k]);
    if (da.length !== db.length || i >= 0) {
      throw new MergeMismatchError(`graph ${which}s differ (A: ${ga[which].map((v) => v.name).join(', ')} / B: ${gb[which].map((v) => v.name).join(', ')})`);
    }
  }
  if (ga.node.length !== gb.node.length) throw new MergeMismatchError(`node count differs: A has ${ga.node.length}, B has ${gb.node.length}`);
  ga.node.forEach((na, i) => {
    const nb = gb.node[i];
    const key = (n: typeof na) => Buffer.from(encodeMessage('NodeProto', { ...n, name: undefined, doc_string: undefined })).toString('base64');
    if (key(na) !== key(nb)) {
      throw new MergeMismatchError(
        `node ${i} differs: A ${na.op_type} '${na.name ?? ''}' (${na.input.join(',')} -> ${na.output.join(',')}) vs ` +
          `B ${nb.op_type} '${nb.name ?? ''}' (${nb.input.join(',')} -> ${nb.output.join(',')})`,
      );
    }
  });
  const namesA = ga.initializer.map((t) => t.name ?? '');
  const byNameB = new Map(gb.initializer.map((t) => [t.name ?? '', t]));
  if (namesA.length !== byNameB.size) throw new MergeMismatchError(`initializer count differs: A ${namesA.length}, B ${byNameB.size}`);
  for (const ta of ga.initializer) {
    const tb = byNameB.get(ta.name ?? '');
    if (!tb) throw new MergeMismatchError(`initializer '${ta.name}' is in A but not in B`);
    if (ta.data_type !== tb.data_type) throw new MergeMismatchError(`initializer '${ta.name}': type ${ta.data_type} in A, ${tb.data_type} in B`);
    const sa = ta.dims.map(Number).join('x');
    const sb = tb.dims.map(Number).join('x');
    if (sa !== sb) throw new MergeMismatchError(`initializer '${ta.name}': shape [${sa}] in A, [${sb}] in B`);
    if (isExternal(ta) || isExternal(tb)) {
      throw new MergeMismatchError(`initializer '${ta.name}' is stored in external data; merge handles self-contained decoders only`);
    }
  }
}

/** Float initializers whose every consumer belongs to one of `layers`. */
function initializersOfLayers(model: ModelProto, layers: number[], config = {}): Set<string> {
  const structure = findDecoderStructure(model, { config });
  const wanted = new Set(layers);
  for (const l of layers) {
    if (l < 0 || l >= structure.layers.length || !Number.isInteger(l)) {
      throw new MergeMismatchError(`--layers: layer ${l} does not exist (the decoder has ${structure.layers.length})`);
    }
  }
  const index = new GraphIndex(model.graph);
  const out = new Set<string>();
  for (const name of index.initializers.keys()) {
    const uses = index.consumersOf(name);
    if (uses.length && uses.every((u) => wanted.has(structure.nodeLayer.get(u.node) ?? -1))) out.add(name);
  }
  return out;
}

/** Interpolates B into A in place (A's model object becomes the merged one). */
export function mergeDecoderModels(a: ModelProto, b: ModelProto, opts: MergeOptions & { config?: object }): MergeStats {
  const w = opts.weight;
  if (!Number.isFinite(w)) throw new Error(`--weight must be a number, got ${w}`);
  assertSameGraph(a, b);
  const only = opts.layers ? initializersOfLayers(a, opts.layers, opts.config) : undefined;
  const byNameB = new Map(b.graph.initializer.map((t) => [t.name ?? '', t]));
  const stats: MergeStats = { merged: [], identical: 0, keptFromA: 0, nonFloat: 0 };
  a.graph.initializer = a.graph.initializer.map((ta) => {
    const tb = byNameB.get(ta.name ?? '')!;
    const same = Buffer.compare(tensorPayload(ta), tensorPayload(tb)) === 0;
    if (!FLOAT_TYPES.has(ta.data_type ?? 0)) {
      stats.nonFloat++;
      if (!same) throw new MergeMismatchError(`non-float initializer '${ta.name}' (type ${ta.data_type}) differs between A and B; it cannot be interpolated`);
      return ta;
    }
    if (same) {
      stats.identical++;
      return ta;
    }
    if (only && !only.has(ta.name ?? '')) {
      stats.keptFromA++;
      return ta;
    }
    stats.merged.push(ta.name ?? '');
    // Endpoints are copied, not computed, so weight 0 / 1 give A / B byte for byte.
    if (w === 0) return ta;
    if (w === 1) return { ...tb, name: ta.name };
    const va = readFloatValues(ta);
    const vb = readFloatValues(tb);
    const out = new Float64Array(va.length);
    for (let i = 0; i < va.length; i++) out[i] = (1 - w) * va[i] + w * vb[i];
    return withFloatValues(ta, out);
  });
  return stats;
}

export interface MergePacksOptions extends MergeOptions {
  /** Replace an existing, non-empty output directory. */
  force?: boolean;
}

export interface MergeReport extends MergeStats {
  outDir: string;
  decoderSha256: string;
  /** Whether a revisable decoder was prepared for the output (A had one). */
  revisable: boolean;
  ms: number;
}

/** Copies pack A to `outDir` and replaces its decoder by the interpolation of A's and B's decoders. */
export async function mergeDecoders(packA: string, packB: string, outDir: string, opts: MergePacksOptions): Promise<MergeReport> {
  const started = Date.now();
  const [ra, rb, ro] = [packA, packB, outDir].map((p) => resolve(p));
  if ([ra, rb].some((p) => ro === p || ro.startsWith(p + sep))) {
    throw new Error('--out must be a new directory outside the input packs');
  }
  const decoderA = join(packA, 'onnx', DECODER_FILE);
  const decoderB = join(packB, 'onnx', DECODER_FILE);
  for (const p of [decoderA, decoderB]) if (!existsSync(p)) throw new Error(`${p} not found`);
  const outExists = existsSync(outDir) && readdirSync(outDir).length > 0;
  if (outExists && !opts.force) throw new Error(`${outDir} exists and is not empty (use --force to replace it)`);

  const a = readModel(decoderA);
  const b = readModel(decoderB);
  const stats = mergeDecoderModels(a, b, { ...opts, config: readTextConfig(packA) });
  if (outExists) rmSync(outDir, { recursive: true, force: true });

  const hadRevisable = existsSync(join(packA, 'onnx', REVISABLE_FILE));
  mkdirSync(outDir, { recursive: true });
  // A's revisable decoder carries A's weights (rebuilt below) and A's reference outputs describe A, not the merge.
  const stale = [...[REVISABLE_FILE, REVISABLE_MANIFEST, DECODER_FILE].map((f) => resolve(packA, 'onnx', f)), resolve(packA, 'reference')];
  cpSync(packA, outDir, { recursive: true, filter: (src) => !stale.includes(resolve(src)) });
  const bytes = writeModel(join(outDir, 'onnx', DECODER_FILE), a);
  const decoderSha256 = sha256Bytes(bytes);
  updatePackManifest(outDir, decoderSha256, {
    a: resolve(packA),
    b: resolve(packB),
    weight: opts.weight,
    layers: opts.layers ?? 'all',
    a_decoder_sha256: sha256Bytes(readFileSync(decoderA)),
    b_decoder_sha256: sha256Bytes(readFileSync(decoderB)),
  });
  if (hadRevisable) await prepareRevisableDecoder(outDir, { force: true });
  return { ...stats, outDir, decoderSha256, revisable: hadRevisable, ms: Date.now() - started };
}

/** Keeps a modelzoo-style manifest.json (name, files: path -> sha256) true for the merged pack. */
function updatePackManifest(outDir: string, decoderSha256: string, mergedFrom: object): void {
  const path = join(outDir, 'manifest.json');
  if (!existsSync(path)) return;
  let manifest: { files?: Record<string, string>; [k: string]: unknown };
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return;
  }
  if (manifest.files && typeof manifest.files === 'object') {
    for (const file of Object.keys(manifest.files)) if (!existsSync(join(outDir, file))) delete manifest.files[file];
    manifest.files[`onnx/${DECODER_FILE}`] = decoderSha256;
  }
  manifest.merged_from = mergedFrom;
  writeFileSync(path, `${JSON.stringify(manifest, null, 2)}\n`);
}
