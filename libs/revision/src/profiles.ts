/**
 * Revision profiles: which registered artifact a job may be revised with, at which strength and positions, for
 * which tenants. Profiles are configuration (REVISION_PROFILES, default config/profiles.json; JSON or YAML),
 * validated once at start-up against the loaded decoder's fingerprint and each artifact's pinned sha256. Steering
 * vectors are also an attack tool (HSI), so a worker refuses to start rather than apply an artifact that is not
 * exactly the registered one. `none` is built in and means no revision.
 *
 * `default` is built in too: what a job that names no profile gets. The file's `defaults` maps a model (pack) name
 * to one of its profiles; a worker resolves `default` to the one of the model it loaded, or to `none`. Entries with
 * a `model` are loaded only by workers of that model, so one file serves every pack (issue 12 item 7: the shipped
 * default is the profile the benchmark chose on calibration for factory-vlm, and a tiny-vlm worker ignores it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { ModelInfo, RevisionFeed } from '@libs/vlm';
import { ArtifactError, loadArtifact, type ArtifactErrorCode, type LoadedArtifact } from './artifact';
import { DetectorError, loadDetector } from './detector';
import { denseLength, unitKey, unitOffset, unitSize, type RevisionLevel, type Unit } from './layout';

export const NO_REVISION = 'none';
/** The reserved name a job without a profile carries; resolved per model by the worker (file `defaults`). */
export const DEFAULT_PROFILE = 'default';
const RESERVED = new Set([NO_REVISION, DEFAULT_PROFILE]);
export const PROFILES_ENV = 'REVISION_PROFILES';
export const DEFAULT_PROFILES_PATH = 'config/profiles.json';

export type RevisionProfileErrorCode =
  'profiles_config_invalid' | 'model_not_revisable' | 'unknown_profile' | 'profile_not_allowed' | 'gate_detector_invalid' | ArtifactErrorCode;

export class RevisionProfileError extends Error {
  readonly name = 'RevisionProfileError';
  constructor(
    readonly code: RevisionProfileErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');
const nonNegInt = z.number().int().min(0);

const profileSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lowercase letters, digits, . _ -'),
  /** Model (pack) name this profile is for; workers of another model skip it. Absent: every model (checked at load). */
  model: z.string().min(1).optional(),
  /** Artifact folder, relative to the config file. */
  artifact: z.string().min(1),
  /** sha256 of the artifact's manifest.json (printed by `modctl calibrate`). */
  artifactSha256: sha256Hex,
  level: z.enum(['layer', 'head']),
  alpha: z.number().finite(),
  positions: z.enum(['last', 'all', 'generated']).default('last'),
  /** Subset of the artifact's layers (layer level). Default: all the artifact selects. */
  layers: z.array(nonNegInt).min(1).optional(),
  /** Subset of the artifact's heads as [layer, head] (head level). Default: all the artifact selects. */
  heads: z
    .array(z.tuple([nonNegInt, nonNegInt]))
    .min(1)
    .optional(),
  /**
   * Input-adaptive revision (issue 12 item 3): each row's feed is scaled by clamp((z - low) / (high - low)), z the
   * detector's probe logit read from that row's own unrevised prefill; benign inputs (z <= low) get no revision.
   */
  gate: z
    .strictObject({
      /** Detector file (`modctl detector fit`), relative to the config file; its model fingerprint is checked. */
      detector: z.string().min(1),
      /** sha256 of the detector file: the gate is pinned like the artifact. */
      detectorSha256: sha256Hex,
      low: z.number().finite(),
      high: z.number().finite(),
    })
    .refine((g) => g.high > g.low, 'gate.high must be greater than gate.low')
    .optional(),
  /** Tenants allowed to use the profile; "*" allows every tenant. */
  tenants: z.array(z.string().min(1)).min(1),
  description: z.string().optional(),
});

const configSchema = z.strictObject({
  profiles: z.array(profileSchema),
  /** Model name -> the profile a job without one gets on that model (it must allow every tenant). */
  defaults: z.record(z.string().min(1), z.string().min(1)).optional(),
});

export type RevisionProfileConfig = z.output<typeof profileSchema>;

export interface RevisionProfile {
  name: string;
  level: RevisionLevel | null;
  alpha: number;
  positions: RevisionFeed['positions'];
  units: Unit[];
  tenants: readonly string[];
  artifactDir: string | null;
  artifactSha256: string | null;
  /** The adaptive gate: detector file, its sha256 and the ramp; null for a static revision. */
  gate: { detector: string; detectorSha256: string; low: number; high: number } | null;
  description?: string;
}

export interface ResolvedRevision {
  /** Undefined for `none`. A fresh copy per call: callers may keep it with a job. */
  feed: RevisionFeed | undefined;
  profile: RevisionProfile;
  artifactSha256: string | null;
}

const NONE_PROFILE: RevisionProfile = {
  name: NO_REVISION,
  level: null,
  alpha: 0,
  positions: 'last',
  units: [],
  tenants: ['*'],
  artifactDir: null,
  artifactSha256: null,
  gate: null,
  description: 'no revision',
};

/** alpha * sigma * theta on the chosen units of the artifact, zeros elsewhere. */
export function buildFeed(artifact: LoadedArtifact, units: readonly Unit[], alpha: number, positions: RevisionFeed['positions']): RevisionFeed {
  const { manifest, directions } = artifact;
  const shape = manifest.model;
  const dense = new Float32Array(denseLength(shape, manifest.level));
  const size = unitSize(shape, manifest.level);
  for (const u of units) {
    const entry = manifest.selection.find((s) => s.layer === u.layer && (s.head ?? -1) === (u.head ?? -1));
    if (!entry) throw new RevisionProfileError('profiles_config_invalid', `artifact ${artifact.dir} does not select ${unitKey(u)}`);
    const start = unitOffset(shape, manifest.level, u);
    for (let i = start; i < start + size; i++) dense[i] = alpha * entry.sigma * directions[i];
  }
  return manifest.level === 'layer' ? { layer: dense, positions } : { head: dense, positions };
}

function parseConfigText(text: string, path: string): z.output<typeof configSchema> {
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new RevisionProfileError('profiles_config_invalid', `${path}: cannot parse: ${(err as Error).message}`);
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new RevisionProfileError('profiles_config_invalid', `${path}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/**
 * The profiles file: REVISION_PROFILES, else config/profiles.json when it exists, else none (only `none`).
 * A path that is set but missing is an error: a typo must not silently disable revision.
 */
export function profilesPath(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string | null {
  const configured = env[PROFILES_ENV];
  if (configured) return resolve(cwd, configured);
  const fallback = resolve(cwd, DEFAULT_PROFILES_PATH);
  return existsSync(fallback) ? fallback : null;
}

function readConfigFile(path: string): z.output<typeof configSchema> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new RevisionProfileError('profiles_config_invalid', `cannot read revision profiles ${path}: ${(err as Error).message}`);
  }
  return parseConfigText(text, path);
}

/**
 * Profile names and the tenants allowed each, read from the same file as `RevisionProfiles` but without
 * loading artifacts or a model: what the intake API checks at the door, so a bad name is never enqueued.
 */
export class ProfileCatalog {
  private constructor(private readonly tenants: ReadonlyMap<string, readonly string[]>) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): ProfileCatalog {
    const path = profilesPath(env, cwd);
    const entries: [string, readonly string[]][] = path ? readConfigFile(path).profiles.map((p) => [p.name, p.tenants]) : [];
    return new ProfileCatalog(new Map([[NO_REVISION, NONE_PROFILE.tenants], [DEFAULT_PROFILE, ['*']], ...entries]));
  }

  names(): string[] {
    return [...this.tenants.keys()];
  }

  /** Throws `unknown_profile` or `profile_not_allowed`. */
  check(name: string, tenant: string): void {
    const allowed = this.tenants.get(name);
    if (!allowed) throw new RevisionProfileError('unknown_profile', `unknown revision profile "${name}" (known: ${this.names().join(', ')})`);
    if (!allowed.includes('*') && !allowed.includes(tenant))
      throw new RevisionProfileError('profile_not_allowed', `tenant "${tenant}" may not use revision profile "${name}"`);
  }
}

export class RevisionProfiles {
  private constructor(
    private readonly profiles: Map<string, { profile: RevisionProfile; feed?: RevisionFeed }>,
    readonly source: string | null,
    /** What `default` resolves to on this worker's model. */
    readonly defaultName: string = NO_REVISION,
    /** Profiles of the file that are for another model, not loaded here. */
    readonly skipped: readonly string[] = [],
  ) {}

  /** Only `none`: for workers started without a profiles file. */
  static none(): RevisionProfiles {
    return new RevisionProfiles(new Map([[NO_REVISION, { profile: NONE_PROFILE }]]), null);
  }

  /**
   * Path from REVISION_PROFILES. When it is unset and the default file does not exist, only `none` is
   * available; a path that is set but missing is an error (a typo must not silently disable revision).
   */
  static fromEnv(model: ModelInfo, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): RevisionProfiles {
    const path = profilesPath(env, cwd);
    return path ? RevisionProfiles.load(path, model) : RevisionProfiles.none();
  }

  static load(path: string, model: ModelInfo): RevisionProfiles {
    return RevisionProfiles.fromConfig(readConfigFile(path), model, dirname(path), path);
  }

  /** Validates every profile and loads every artifact now, so a bad one stops start-up, not a job. */
  static fromConfig(config: unknown, model: ModelInfo, baseDir: string, source = '<config>'): RevisionProfiles {
    const parsed = configSchema.safeParse(config);
    if (!parsed.success) throw new RevisionProfileError('profiles_config_invalid', `${source}: ${z.prettifyError(parsed.error)}`);
    const map = new Map<string, { profile: RevisionProfile; feed?: RevisionFeed }>([[NO_REVISION, { profile: NONE_PROFILE }]]);
    const names = new Set<string>();
    const skipped: string[] = [];
    for (const p of parsed.data.profiles) {
      const where = `${source}: profile "${p.name}"`;
      if (RESERVED.has(p.name) || names.has(p.name))
        throw new RevisionProfileError('profiles_config_invalid', `${where}: ${RESERVED.has(p.name) ? 'the name is reserved' : 'defined twice'}`);
      names.add(p.name);
      if (p.model !== undefined && p.model !== model.name) {
        skipped.push(p.name);
        continue;
      }
      if (!model.revisable)
        throw new RevisionProfileError('model_not_revisable', `${where}: model ${model.name} has no revision inputs (run \`modctl model prepare\`)`);
      const dir = resolve(baseDir, p.artifact);
      let artifact: LoadedArtifact;
      try {
        artifact = loadArtifact(dir, { expectedFingerprint: model.fingerprint, expectedSha256: p.artifactSha256 });
      } catch (err) {
        if (err instanceof ArtifactError) throw new RevisionProfileError(err.code, `${where}: ${err.message}`);
        throw err;
      }
      const m = artifact.manifest;
      if (m.level !== p.level) throw new RevisionProfileError('profiles_config_invalid', `${where}: level ${p.level}, but the artifact is ${m.level}-level`);
      const shapeOk = m.model.layers === model.layers && m.model.hidden === model.hidden && m.model.heads === model.heads && m.model.headDim === model.headDim;
      if (!shapeOk) throw new RevisionProfileError('artifact_shape_mismatch', `${where}: artifact shape differs from model ${model.name}`);
      if (p.level === 'layer' && p.heads) throw new RevisionProfileError('profiles_config_invalid', `${where}: "heads" given for a layer-level profile`);
      if (p.level === 'head' && p.layers) throw new RevisionProfileError('profiles_config_invalid', `${where}: "layers" given for a head-level profile`);
      const units: Unit[] = p.heads
        ? p.heads.map(([layer, head]) => ({ layer, head }))
        : p.layers
          ? p.layers.map((layer) => ({ layer }))
          : m.selection.map((s) => (s.head === undefined ? { layer: s.layer } : { layer: s.layer, head: s.head }));
      const feed = buildFeed(artifact, units, p.alpha, p.positions);
      let gate: RevisionProfile['gate'] = null;
      if (p.gate) {
        const detectorPath = resolve(baseDir, p.gate.detector);
        try {
          const detector = loadDetector(detectorPath, model);
          if (detector.sha256 !== p.gate.detectorSha256)
            throw new RevisionProfileError(
              'gate_detector_invalid',
              `${where}: detector ${detectorPath} has sha256 ${detector.sha256}, the profile pins ${p.gate.detectorSha256}`,
            );
          feed.gate = { probe: detector.probe, low: p.gate.low, high: p.gate.high };
        } catch (err) {
          if (err instanceof DetectorError) throw new RevisionProfileError('gate_detector_invalid', `${where}: ${err.message}`);
          throw err;
        }
        gate = { detector: detectorPath, detectorSha256: p.gate.detectorSha256, low: p.gate.low, high: p.gate.high };
      }
      map.set(p.name, {
        profile: {
          name: p.name,
          level: p.level,
          alpha: p.alpha,
          positions: p.positions,
          units,
          tenants: p.tenants,
          artifactDir: dir,
          artifactSha256: artifact.artifactSha256,
          gate,
          description: p.description,
        },
        feed,
      });
    }
    const defaults = parsed.data.defaults ?? {};
    for (const [m, name] of Object.entries(defaults)) {
      if (!names.has(name) && name !== NO_REVISION)
        throw new RevisionProfileError('profiles_config_invalid', `${source}: defaults.${m} names "${name}", which the file does not define`);
    }
    const defaultName = defaults[model.name] ?? NO_REVISION;
    const target = map.get(defaultName);
    if (!target)
      throw new RevisionProfileError('profiles_config_invalid', `${source}: defaults.${model.name} names "${defaultName}", which is for another model`);
    if (!target.profile.tenants.includes('*'))
      throw new RevisionProfileError('profiles_config_invalid', `${source}: the default profile "${defaultName}" must allow every tenant ("*")`);
    return new RevisionProfiles(map, source, defaultName, skipped);
  }

  names(): string[] {
    return [...this.profiles.keys(), DEFAULT_PROFILE];
  }

  has(name: string): boolean {
    return name === DEFAULT_PROFILE || this.profiles.has(name);
  }

  profile(name: string): RevisionProfile {
    const entry = this.profiles.get(name === DEFAULT_PROFILE ? this.defaultName : name);
    if (!entry) throw new RevisionProfileError('unknown_profile', `unknown revision profile "${name}" (known: ${this.names().join(', ')})`);
    return entry.profile;
  }

  isAllowed(name: string, tenant: string): boolean {
    const t = this.profile(name).tenants;
    return t.includes('*') || t.includes(tenant);
  }

  /** `default` resolves to this model's default profile; the result names the profile actually applied. */
  resolve(name: string, tenant: string): ResolvedRevision {
    if (name === DEFAULT_PROFILE) name = this.defaultName;
    const entry = this.profiles.get(name);
    if (!entry && this.skipped.includes(name))
      throw new RevisionProfileError('unknown_profile', `revision profile "${name}" is for another model than ${this.source ?? 'this worker'}'s loaded one`);
    if (!entry) throw new RevisionProfileError('unknown_profile', `unknown revision profile "${name}" (known: ${this.names().join(', ')})`);
    if (!this.isAllowed(name, tenant)) throw new RevisionProfileError('profile_not_allowed', `tenant "${tenant}" may not use revision profile "${name}"`);
    const feed = entry.feed && {
      positions: entry.feed.positions,
      ...(entry.feed.layer ? { layer: entry.feed.layer.slice() } : {}),
      ...(entry.feed.head ? { head: entry.feed.head.slice() } : {}),
      // The probe is read-only: shared, not copied.
      ...(entry.feed.gate ? { gate: { ...entry.feed.gate } } : {}),
    };
    return { feed, profile: entry.profile, artifactSha256: entry.profile.artifactSha256 };
  }
}
