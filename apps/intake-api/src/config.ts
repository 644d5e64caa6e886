import { ProfileCatalog } from '@libs/revision';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_POLICY, limitsFromEnv, type Limits, type Policy } from '@libs/contracts';
import { tenantLimitsFromEnv, type TenantLimitsCatalog } from '@libs/queue';
import { readSetting } from '@libs/settings';

/** Env variables the intake API reads (besides the limits in LIMIT_ENV and the queue/storage ones). */
export const INTAKE_ENV = {
  port: 'PORT',
  host: 'HOST',
  apiKeys: 'API_KEYS',
  apiKeysFile: 'API_KEYS_FILE',
  adminKeySha256: 'ADMIN_API_KEY_SHA256',
  // Same variable as the safety library's default policy, so intake stamps jobs with what the evaluators assume.
  policy: 'ETA_POLICY',
  profiles: 'REVISION_PROFILES',
  decodeCheck: 'INTAKE_DECODE_CHECK',
  metricsAuth: 'METRICS_AUTH',
} as const;

/**
 * Who may read `/metrics`: `public` (the default: Prometheus scrapes pods by annotation without credentials, and the
 * figures carry route templates, error codes and queue counts, no tenant, id or prompt) or `admin` (the admin key, as
 * a Bearer token in the scrape config), for deployments where the API port is reachable from outside the cluster.
 */
export const METRICS_AUTH_MODES = ['public', 'admin'] as const;
export type MetricsAuth = (typeof METRICS_AUTH_MODES)[number];

export const DEFAULT_INTAKE_PORT = 3000;

export interface IntakeConfig {
  port: number;
  host: string;
  limits: Limits;
  /** sha256(hex) of an API key -> tenant name. Keys are never held in plain text. */
  tenantKeys: Map<string, string>;
  adminKeys: Set<string>;
  policy: Policy;
  /** Revision profiles (names and allowed tenants) from the workers' profiles file; `none` is always there. */
  profiles: ProfileCatalog;
  /** Decode every image fully at the door (catches truncated files) rather than trusting the header. */
  decodeCheck: boolean;
  metricsAuth: MetricsAuth;
  /** Each tenant's request rate, in-flight limit and backlog share (TENANT_* settings and TENANT_LIMITS_FILE). */
  tenantLimits: TenantLimitsCatalog;
}

export const INTAKE_CONFIG = Symbol('INTAKE_CONFIG');

const SHA = /^[0-9a-f]{64}$/;

/**
 * Keys come hashed, from `API_KEYS` ("tenant:sha256,tenant:sha256") and/or a mounted secret file
 * (`API_KEYS_FILE`, YAML or JSON: `{ tenants: { <name>: [sha256, ...] }, admin: [sha256, ...] }`).
 */
export function loadKeys(env: NodeJS.ProcessEnv): { tenantKeys: Map<string, string>; adminKeys: Set<string> } {
  const tenantKeys = new Map<string, string>();
  const adminKeys = new Set<string>();
  const addTenant = (tenant: string, sha: string) => {
    const hash = sha.trim().toLowerCase();
    if (!SHA.test(hash)) throw new Error(`API key of tenant ${tenant} must be given as a sha256 hex digest`);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(tenant)) throw new Error(`bad tenant name "${tenant}"`);
    tenantKeys.set(hash, tenant);
  };
  const addAdmin = (sha: string) => {
    const hash = sha.trim().toLowerCase();
    if (!SHA.test(hash)) throw new Error('admin API key must be given as a sha256 hex digest');
    adminKeys.add(hash);
  };
  for (const entry of (env[INTAKE_ENV.apiKeys] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const at = entry.lastIndexOf(':');
    if (at <= 0) throw new Error(`${INTAKE_ENV.apiKeys} entries are tenant:sha256, got "${entry}"`);
    addTenant(entry.slice(0, at), entry.slice(at + 1));
  }
  if (env[INTAKE_ENV.adminKeySha256]) addAdmin(env[INTAKE_ENV.adminKeySha256]!);
  const file = env[INTAKE_ENV.apiKeysFile];
  if (file) {
    const doc = parseYaml(readFileSync(file, 'utf8')) as { tenants?: Record<string, string[] | string>; admin?: string[] | string };
    for (const [tenant, hashes] of Object.entries(doc.tenants ?? {})) {
      for (const h of [hashes].flat()) addTenant(tenant, h);
    }
    for (const h of [doc.admin ?? []].flat()) addAdmin(h);
  }
  return { tenantKeys, adminKeys };
}

export function intakeConfigFromEnv(env: NodeJS.ProcessEnv = process.env): IntakeConfig {
  return {
    port: readSetting<number>(env, INTAKE_ENV.port) ?? DEFAULT_INTAKE_PORT,
    host: readSetting<string>(env, INTAKE_ENV.host) ?? '0.0.0.0',
    limits: limitsFromEnv(env),
    ...loadKeys(env),
    policy: readSetting<Policy>(env, INTAKE_ENV.policy) ?? DEFAULT_POLICY,
    profiles: ProfileCatalog.fromEnv(env),
    decodeCheck: readSetting<boolean>(env, INTAKE_ENV.decodeCheck) ?? true,
    metricsAuth: readSetting<MetricsAuth>(env, INTAKE_ENV.metricsAuth) ?? 'public',
    tenantLimits: tenantLimitsFromEnv(env),
  };
}
