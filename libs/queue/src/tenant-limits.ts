import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { readSetting } from '@libs/settings';
import { tenantKeys } from './keys';

/**
 * What one tenant may do, cluster-wide (every intake replica reads the same Redis). Defaults come from the settings
 * (TENANT_RATE_PER_SECOND, TENANT_RATE_BURST, TENANT_MAX_IN_FLIGHT, TENANT_MAX_BACKLOG_SHARE), overrides per tenant
 * from TENANT_LIMITS_FILE. The defaults limit nothing beyond the global backlog: an operator opts tenants in.
 */
export interface TenantLimits {
  /**
   * Submission requests (POST /v1/jobs, POST /v1/batches) per second, sustained: a GCRA over Redis time.
   * @defaultValue 0 (no rate limit)
   */
  ratePerSecond: number;
  /**
   * Requests that may arrive at once after an idle spell (the GCRA's burst); only meaningful with a rate.
   * @defaultValue one second of the rate, rounded up, at least 1
   */
  burst: number;
  /**
   * Items accepted and without a final verdict (queued or processing), plus the tenant's pending reservations.
   * @defaultValue 0 (no limit of its own)
   */
  maxInFlight: number;
  /**
   * The fraction (0..1] of INTAKE_MAX_BACKLOG the tenant's items in flight may take; 1 lets one tenant fill it.
   * @defaultValue 1
   */
  maxBacklogShare: number;
}

export const TENANT_LIMITS_ENV = {
  ratePerSecond: 'TENANT_RATE_PER_SECOND',
  burst: 'TENANT_RATE_BURST',
  maxInFlight: 'TENANT_MAX_IN_FLIGHT',
  maxBacklogShare: 'TENANT_MAX_BACKLOG_SHARE',
  file: 'TENANT_LIMITS_FILE',
} as const;

/** The defaults of the settings table (a burst of 0 stands for "one second of the rate"). */
export const DEFAULT_TENANT_LIMITS = { ratePerSecond: 0, burst: 0, maxInFlight: 0, maxBacklogShare: 1 } as const;

/** The burst a rate gets when none is configured: one second's worth, at least one request. */
export function defaultBurst(ratePerSecond: number): number {
  return Math.max(1, Math.ceil(ratePerSecond));
}

const FileEntrySchema = z.strictObject({
  rate_per_second: z.number().min(0, 'must be 0 (unlimited) or more').finite().optional(),
  burst: z.number().int('must be an integer').min(1, 'must be at least 1').optional(),
  max_in_flight: z.number().int('must be an integer').min(0, 'must be 0 (unlimited) or more').optional(),
  max_backlog_share: z.number().gt(0, 'must be above 0').max(1, 'must be at most 1').optional(),
});

/** TENANT_LIMITS_FILE, YAML or JSON: `{ tenants: { <name>: { rate_per_second?, burst?, max_in_flight?, max_backlog_share? } } }`. */
export const TenantLimitsFileSchema = z.strictObject({ tenants: z.record(z.string().min(1), FileEntrySchema) });
export type TenantLimitsFile = z.infer<typeof TenantLimitsFileSchema>;

/** The limits of every tenant: the defaults, and each file entry's fields over them. */
export class TenantLimitsCatalog {
  private readonly defaults: TenantLimits;
  private readonly overrides: Map<string, TenantLimits>;

  constructor(defaults: Partial<TenantLimits> = {}, file: TenantLimitsFile = { tenants: {} }) {
    const rate = defaults.ratePerSecond ?? DEFAULT_TENANT_LIMITS.ratePerSecond;
    this.defaults = {
      ratePerSecond: rate,
      burst: defaults.burst || defaultBurst(rate),
      maxInFlight: defaults.maxInFlight ?? DEFAULT_TENANT_LIMITS.maxInFlight,
      maxBacklogShare: defaults.maxBacklogShare ?? DEFAULT_TENANT_LIMITS.maxBacklogShare,
    };
    const explicitBurst = Boolean(defaults.burst);
    this.overrides = new Map(
      Object.entries(file.tenants).map(([tenant, entry]) => {
        const ratePerSecond = entry.rate_per_second ?? this.defaults.ratePerSecond;
        // A tenant given its own rate but no burst gets one second of its own rate, not the default rate's burst.
        const burst = entry.burst ?? (entry.rate_per_second !== undefined && !explicitBurst ? defaultBurst(ratePerSecond) : this.defaults.burst);
        return [
          tenant,
          {
            ratePerSecond,
            burst,
            maxInFlight: entry.max_in_flight ?? this.defaults.maxInFlight,
            maxBacklogShare: entry.max_backlog_share ?? this.defaults.maxBacklogShare,
          },
        ];
      }),
    );
  }

  for(tenant: string): TenantLimits {
    return this.overrides.get(tenant) ?? this.defaults;
  }

  /** Tenants the file names (for start-up logs). */
  get configuredTenants(): string[] {
    return [...this.overrides.keys()];
  }
}

/** Parses the file's text; errors name the file, the tenant and the field. */
export function parseTenantLimitsFile(text: string, source: string): TenantLimitsFile {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new Error(`${TENANT_LIMITS_ENV.file} ${source}: not YAML or JSON: ${(err as Error).message}`);
  }
  const parsed = TenantLimitsFileSchema.safeParse(doc ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const [top, tenant, field] = issue.path.map(String);
      const where = top === 'tenants' && tenant !== undefined ? `tenant "${tenant}"${field ? ` field ${field}` : ''}` : issue.path.join('.') || '(document)';
      const message = issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')}` : issue.message;
      return `${where}: ${message}`;
    });
    throw new Error(`${TENANT_LIMITS_ENV.file} ${source}: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/** The catalog from the settings and TENANT_LIMITS_FILE (read once, at start-up: a bad file stops the process). */
export function tenantLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): TenantLimitsCatalog {
  const path = readSetting<string>(env, TENANT_LIMITS_ENV.file);
  let file: TenantLimitsFile | undefined;
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`${TENANT_LIMITS_ENV.file} ${path}: cannot be read: ${(err as Error).message}`);
    }
    file = parseTenantLimitsFile(text, path);
  }
  return new TenantLimitsCatalog(
    {
      ratePerSecond: readSetting<number>(env, TENANT_LIMITS_ENV.ratePerSecond),
      burst: readSetting<number>(env, TENANT_LIMITS_ENV.burst),
      maxInFlight: readSetting<number>(env, TENANT_LIMITS_ENV.maxInFlight),
      maxBacklogShare: readSetting<number>(env, TENANT_LIMITS_ENV.maxBacklogShare),
    },
    file,
  );
}

/**
 * The items a tenant may hold under its backlog share of `maxBacklog`; 0 when the share does not limit it below the
 * global limit. A configured share always leaves room for one item, so a tiny share slows a tenant, never locks it out.
 */
export function backlogShareCap(limits: Pick<TenantLimits, 'maxBacklogShare'>, maxBacklog: number): number {
  if (limits.maxBacklogShare >= 1) return 0;
  return Math.max(1, Math.floor(limits.maxBacklogShare * maxBacklog));
}

/**
 * GCRA (the generic cell rate algorithm, as in redis-cell and Stripe's limiter): one key per tenant holds its
 * theoretical arrival time (TAT, microseconds of Redis time). A request at `now` is let through when
 * max(TAT, now) + T - now <= burst * T, with T = 1/rate, and then moves TAT to max(TAT, now) + T; otherwise it
 * may come back when that would hold: after max(TAT, now) + T - burst * T - now. So `burst` requests pass at once
 * and then one every T. The key expires when TAT is reached: an idle tenant's key is gone, which is the same as a
 * TAT in the past. Redis TIME is the one clock, so every replica agrees.
 *
 * KEYS[1] the tenant's rate key. ARGV[1] T in microseconds, ARGV[2] burst.
 * Returns {1|0, microseconds until a retry passes (0 when allowed), requests left in the burst}.
 */
export const GCRA_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local newTat = tat + interval
local allowAt = newTat - burst * interval
if now < allowAt then
  return {0, math.ceil(allowAt - now), 0}
end
-- %.0f: Lua's tostring keeps 14 digits, fewer than a microsecond timestamp has.
redis.call('SET', KEYS[1], string.format('%.0f', newTat), 'PX', math.max(1, math.ceil((newTat - now) / 1000)))
return {1, 0, math.floor((now - allowAt) / interval)}`;

export type RateDecision = { allowed: true; remaining: number } | { allowed: false; retryAfterMs: number; retryAfterSeconds: number };

/** Runs a script (an ioredis client, or the queue connection). */
export interface ScriptRunner {
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
}

/** One tenant's request rate, cluster-wide (see GCRA_LUA). */
export class TenantRateLimiter {
  constructor(
    private readonly redis: ScriptRunner,
    private readonly prefix: string,
  ) {}

  /** Takes one request of `tenant`'s rate; a rate of 0 is no limit (nothing is read or written). */
  async consume(tenant: string, limits: Pick<TenantLimits, 'ratePerSecond' | 'burst'>): Promise<RateDecision> {
    if (!(limits.ratePerSecond > 0)) return { allowed: true, remaining: Number.POSITIVE_INFINITY };
    const intervalUs = 1_000_000 / limits.ratePerSecond;
    const [ok, waitUs, remaining] = (await this.redis.eval(GCRA_LUA, 1, tenantKeys(this.prefix).rate(tenant), intervalUs, Math.max(1, limits.burst))) as [
      number,
      number,
      number,
    ];
    if (ok === 1) return { allowed: true, remaining };
    const retryAfterMs = waitUs / 1000;
    // Retry-After is whole seconds: round up, so a client that waits it is let through.
    return { allowed: false, retryAfterMs, retryAfterSeconds: Math.max(1, Math.ceil(waitUs / 1_000_000)) };
  }
}
