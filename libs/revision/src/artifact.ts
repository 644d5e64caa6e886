/**
 * Revision artifact: `<dir>/manifest.json` + `<dir>/vectors.bin`.
 *
 * vectors.bin holds the UNIT directions (float32 little-endian) in the dense layout of the level, zeros where a
 * unit is not selected; the per-unit sigma lives in the manifest, so a profile can choose alpha without a new
 * artifact. The manifest carries the sha256 of vectors.bin and the fingerprint of the decoder the directions
 * were computed on. The artifact's identity (`artifactSha256`, pinned by profiles and written into verdicts) is
 * the sha256 of manifest.json: it covers the vectors through their checksum and also sigma, the selection and the
 * fingerprint, which a checksum of vectors.bin alone would leave open to tampering.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { denseLength, unitInRange, unitKey, type ModelShape, type RevisionLevel, type Unit } from './layout';
import type { DirectionMethod, GenerationEffect, RankingCriterion } from './selection';
import type { SampleStrategy } from './sample-strategies';

export const ARTIFACT_FORMAT = 'vlm-moderation/revision-artifact';
export const ARTIFACT_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const VECTORS_FILE = 'vectors.bin';

export interface SelectedUnit extends Unit {
  /** Std of all calibration activations projected on the unit direction. */
  sigma: number;
  /** Held-out probe accuracy (ITI). */
  probeAccuracy: number;
  /** Holdout class separation along the unit direction (absent in artifacts written before it was recorded). */
  separation?: number;
  /** Single-unit causal effect (HSI), when measured. */
  causalEffect?: number;
  /** Single-unit judged-generation effect (issue 12 item 2), when measured with `--select generation`. */
  generation?: GenerationEffect;
  /** 1 = best. */
  rank: number;
}

export interface ArtifactManifest {
  format: typeof ARTIFACT_FORMAT;
  formatVersion: number;
  method: DirectionMethod;
  strategy: SampleStrategy;
  level: RevisionLevel;
  /** Class the directions point toward: 'safe' / 'unsafe' (a sample label) or 'text-only' (image-shift); see docs/safety-methods.md. */
  positiveClass: string;
  rankedBy: RankingCriterion;
  model: ModelShape & { name: string; fingerprint: string };
  selection: SelectedUnit[];
  samples: { positive: number; negative: number; train: number; holdout: number };
  calibration: Record<string, unknown>;
  vectors: { file: typeof VECTORS_FILE; dtype: 'float32-le'; length: number; sha256: string };
  createdAt: string;
}

export type ArtifactErrorCode =
  | 'artifact_missing'
  | 'artifact_malformed'
  | 'artifact_unsupported_version'
  | 'artifact_checksum_mismatch'
  | 'artifact_fingerprint_mismatch'
  | 'artifact_shape_mismatch';

export class ArtifactError extends Error {
  readonly name = 'ArtifactError';
  constructor(
    readonly code: ArtifactErrorCode,
    message: string,
    readonly dir?: string,
  ) {
    super(dir ? `${message} (artifact ${dir})` : message);
  }
}

export interface LoadedArtifact {
  dir: string;
  manifest: ArtifactManifest;
  /** Unit directions, dense layout of `manifest.level`. */
  directions: Float32Array;
  /** sha256 of manifest.json: the artifact's identity. */
  artifactSha256: string;
}

export function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function float32Bytes(v: Float32Array): Buffer {
  const buf = Buffer.alloc(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i], i * 4);
  return buf;
}

function readFloat32(bytes: Buffer): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

export type ArtifactDraft = Omit<ArtifactManifest, 'format' | 'formatVersion' | 'vectors' | 'createdAt'> & { createdAt?: string };

/**
 * Writes the artifact; files are written under temporary names and renamed so a reader never sees a
 * manifest whose vectors are still being written. Returns what `loadArtifact` would return.
 */
export function writeArtifact(dir: string, draft: ArtifactDraft, directions: Float32Array): LoadedArtifact {
  const expected = denseLength(draft.model, draft.level);
  if (directions.length !== expected) {
    throw new ArtifactError('artifact_shape_mismatch', `directions have ${directions.length} entries, the ${draft.level} layout needs ${expected}`);
  }
  mkdirSync(dir, { recursive: true });
  const bytes = float32Bytes(directions);
  const manifest: ArtifactManifest = {
    format: ARTIFACT_FORMAT,
    formatVersion: ARTIFACT_FORMAT_VERSION,
    ...draft,
    vectors: { file: VECTORS_FILE, dtype: 'float32-le', length: directions.length, sha256: sha256(bytes) },
    createdAt: draft.createdAt ?? new Date().toISOString(),
  };
  const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
  writeFileSync(join(dir, `${VECTORS_FILE}.tmp`), bytes);
  renameSync(join(dir, `${VECTORS_FILE}.tmp`), join(dir, VECTORS_FILE));
  writeFileSync(join(dir, `${MANIFEST_FILE}.tmp`), manifestText);
  renameSync(join(dir, `${MANIFEST_FILE}.tmp`), join(dir, MANIFEST_FILE));
  return { dir, manifest, directions: readFloat32(bytes), artifactSha256: sha256(manifestText) };
}

function readOrThrow(path: string, dir: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ArtifactError('artifact_missing', `cannot read ${path}: ${(err as Error).message}`, dir);
  }
}

function checkManifestShape(m: ArtifactManifest, dir: string): void {
  const bad = (why: string) => new ArtifactError('artifact_malformed', `manifest ${why}`, dir);
  if (m.format !== ARTIFACT_FORMAT) throw bad(`format is ${JSON.stringify(m.format)}, expected ${ARTIFACT_FORMAT}`);
  if (m.formatVersion !== ARTIFACT_FORMAT_VERSION) {
    throw new ArtifactError(
      'artifact_unsupported_version',
      `format version ${m.formatVersion} is not supported (this build reads ${ARTIFACT_FORMAT_VERSION})`,
      dir,
    );
  }
  if (m.level !== 'layer' && m.level !== 'head') throw bad(`level ${JSON.stringify(m.level)}`);
  const shape = m.model;
  if (!shape || ![shape.layers, shape.hidden, shape.heads, shape.headDim].every((n) => Number.isInteger(n) && n > 0))
    throw bad('model shape is missing or invalid');
  if (typeof shape.fingerprint !== 'string' || !shape.fingerprint) throw bad('has no decoder fingerprint');
  if (!m.vectors || typeof m.vectors.sha256 !== 'string' || m.vectors.length !== denseLength(shape, m.level))
    throw bad('vectors entry is missing or has the wrong length');
  if (!Array.isArray(m.selection) || m.selection.length === 0) throw bad('selects no units');
  const seen = new Set<string>();
  for (const u of m.selection) {
    if (!unitInRange(shape, m.level, u)) throw bad(`selects ${JSON.stringify(u)}, outside the model`);
    if (!(Number.isFinite(u.sigma) && u.sigma >= 0)) throw bad(`has an invalid sigma for ${unitKey(u)}`);
    if (seen.has(unitKey(u))) throw bad(`selects ${unitKey(u)} twice`);
    seen.add(unitKey(u));
  }
}

/**
 * Loads and verifies an artifact: manifest format, vectors checksum, and (when given) the decoder fingerprint.
 * Every failure is an `ArtifactError` with a code; nothing is applied from an artifact that fails.
 */
export function loadArtifact(dir: string, options: { expectedFingerprint?: string; expectedSha256?: string } = {}): LoadedArtifact {
  const manifestBytes = readOrThrow(join(dir, MANIFEST_FILE), dir);
  const artifactSha256 = sha256(manifestBytes);
  if (options.expectedSha256 !== undefined && options.expectedSha256 !== artifactSha256) {
    throw new ArtifactError('artifact_checksum_mismatch', `manifest sha256 is ${artifactSha256}, the registered one is ${options.expectedSha256}`, dir);
  }
  let manifest: ArtifactManifest;
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as ArtifactManifest;
  } catch (err) {
    throw new ArtifactError('artifact_malformed', `manifest is not JSON: ${(err as Error).message}`, dir);
  }
  checkManifestShape(manifest, dir);
  const bytes = readOrThrow(join(dir, VECTORS_FILE), dir);
  const actual = sha256(bytes);
  if (actual !== manifest.vectors.sha256) {
    throw new ArtifactError('artifact_checksum_mismatch', `${VECTORS_FILE} sha256 is ${actual}, the manifest says ${manifest.vectors.sha256}`, dir);
  }
  if (bytes.length !== manifest.vectors.length * 4) {
    throw new ArtifactError('artifact_malformed', `${VECTORS_FILE} has ${bytes.length} bytes, expected ${manifest.vectors.length * 4}`, dir);
  }
  if (options.expectedFingerprint !== undefined && options.expectedFingerprint !== manifest.model.fingerprint) {
    throw new ArtifactError(
      'artifact_fingerprint_mismatch',
      `computed on decoder ${manifest.model.fingerprint}, the loaded decoder is ${options.expectedFingerprint}`,
      dir,
    );
  }
  return { dir, manifest, directions: readFloat32(bytes), artifactSha256 };
}
