/**
 * A tenant's webhook endpoints: those registered through the API, in Redis (one hash per tenant under the queue
 * prefix, `webhookKeys(prefix).endpoints(tenant)`), and the read-only ones of the operator's file. It also keeps
 * `webhookKeys(prefix).subscribed` holding exactly the tenants with at least one endpoint: the verdict scripts
 * write outbox events only for those (or for a job with a callback URL), so a tenant without webhooks costs nothing.
 * Adding and removing change the hash and the set in one script, so the two never disagree.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ModerationError, WEBHOOK_EVENT_TYPES, type WebhookEndpoint, type WebhookEventType } from '@libs/contracts';
import { webhookKeys } from '@libs/queue';
import type { ConfiguredEndpoint } from './config';
import { generateSecret } from './signer';
import type { TargetGuard } from './target-guard';

/** An endpoint with its secret: what the notifier signs with. Never answered by the API after registration. */
export interface Endpoint {
  id: string;
  tenant: string;
  url: string;
  secret: string;
  events: WebhookEventType[];
  created_at: string | null;
  read_only: boolean;
}

// KEYS: [1] the tenant's endpoints, [2] subscribed, [3] registration numbers. ARGV: [1] id, [2] json (an object),
// [3] most API endpoints allowed, [4] tenant. The endpoint is stored with its registration number (`seq`) appended:
// created_at has milliseconds, and endpoints registered within one came back in the order of their random ids.
const ADD = `
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
local seq = redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('HSET', KEYS[1], ARGV[1], string.sub(ARGV[2], 1, -2) .. ',"seq":' .. seq .. '}')
redis.call('SADD', KEYS[2], ARGV[4])
return 1`;

/** An endpoint as stored: the API's fields and the registration number (absent on endpoints stored before it). */
type StoredEndpoint = Omit<Endpoint, 'tenant' | 'read_only'> & { seq?: number };

function fromStored(json: string, tenant: string): Endpoint & { seq?: number } {
  return { ...(JSON.parse(json) as StoredEndpoint), tenant, read_only: false };
}

function withoutSeq({ seq: _seq, ...endpoint }: Endpoint & { seq?: number }): Endpoint {
  return endpoint;
}

// KEYS as ADD. ARGV: [1] id, [2] tenant, [3] '1' when the tenant has endpoints in the file (it stays subscribed).
const REMOVE = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[1]) == 0 and ARGV[3] ~= '1' then redis.call('SREM', KEYS[2], ARGV[2]) end
return 1`;

// A subscribed tenant without API endpoints and not in this file is dropped. KEYS as ADD; ARGV: [1] tenant.
const PRUNE = `
if redis.call('HLEN', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end
return 0`;

/** The public view (no secret). */
export function publicEndpoint(e: Endpoint): WebhookEndpoint {
  return { id: e.id, url: e.url, events: e.events, created_at: e.created_at, read_only: e.read_only };
}

export class EndpointRegistry {
  private readonly keys: ReturnType<typeof webhookKeys>;
  private readonly configured: Map<string, Endpoint[]>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly guard: TargetGuard,
    configured: Map<string, ConfiguredEndpoint[]> = new Map(),
    private readonly maxEndpoints = 10,
  ) {
    this.keys = webhookKeys(prefix);
    this.configured = new Map(
      [...configured].map(([tenant, list]) => [
        tenant,
        list.map((e) => ({
          // Stable across restarts and replicas: the same tenant and URL give the same id.
          id: `whk_${createHash('sha256').update(`config\0${tenant}\0${e.url}`).digest('hex').slice(0, 24)}`,
          tenant,
          // The file is held to the API's rules: a file entry to a private address needs WEBHOOK_ALLOWED_TARGETS too.
          url: guard.checkRegistrable(e.url).toString(),
          secret: e.secret,
          events: e.events,
          created_at: null,
          read_only: true,
        })),
      ]),
    );
  }

  /**
   * Start-up of the intake and the notifier: the file's tenants are subscribed, and subscribed tenants with no
   * endpoint left (deleted from the file since) are dropped.
   */
  async syncSubscriptions(): Promise<void> {
    if (this.configured.size) await this.redis.sadd(this.keys.subscribed, ...this.configured.keys());
    for (const tenant of await this.redis.smembers(this.keys.subscribed)) {
      if (this.configured.has(tenant)) continue;
      await this.redis.eval(PRUNE, 2, this.keys.endpoints(tenant), this.keys.subscribed, tenant);
    }
  }

  /** Registers an endpoint: the URL passes the registration checks (TargetGuard), at most maxEndpoints per tenant. */
  async add(tenant: string, rawUrl: unknown, events: WebhookEventType[] = [...WEBHOOK_EVENT_TYPES]): Promise<Endpoint> {
    const url = this.guard.checkRegistrable(rawUrl).toString();
    const fromFile = this.configured.get(tenant)?.length ?? 0;
    const endpoint: Endpoint = {
      id: `whk_${randomBytes(12).toString('hex')}`,
      tenant,
      url,
      secret: generateSecret(),
      events: [...new Set(events)],
      created_at: new Date().toISOString(),
      read_only: false,
    };
    const { tenant: _t, read_only: _r, ...stored } = endpoint;
    const added = await this.redis.eval(
      ADD,
      3,
      this.keys.endpoints(tenant),
      this.keys.subscribed,
      this.keys.endpointSeq,
      endpoint.id,
      JSON.stringify(stored),
      this.maxEndpoints - fromFile,
      tenant,
    );
    if (added !== 1) {
      throw new ModerationError('too_many_webhooks', `a tenant has at most ${this.maxEndpoints} webhook endpoints; delete one first`, {
        limit: this.maxEndpoints,
      });
    }
    return endpoint;
  }

  /** The tenant's endpoints, the file's first. */
  async list(tenant: string): Promise<Endpoint[]> {
    const stored = await this.redis.hgetall(this.keys.endpoints(tenant));
    const api = Object.values(stored)
      .map((json) => fromStored(json, tenant))
      .sort((a, b) => (a.created_at ?? '').localeCompare(b.created_at ?? '') || (a.seq ?? 0) - (b.seq ?? 0) || a.id.localeCompare(b.id));
    return [...(this.configured.get(tenant) ?? []), ...api.map(withoutSeq)];
  }

  async get(tenant: string, id: string): Promise<Endpoint | undefined> {
    const fromFile = this.configured.get(tenant)?.find((e) => e.id === id);
    if (fromFile) return fromFile;
    const json = await this.redis.hget(this.keys.endpoints(tenant), id);
    return json ? withoutSeq(fromStored(json, tenant)) : undefined;
  }

  /** Deletes one of the tenant's API endpoints; false when it has none of that id. A file endpoint is refused. */
  async remove(tenant: string, id: string): Promise<boolean> {
    if (this.configured.get(tenant)?.some((e) => e.id === id)) {
      throw new ModerationError('forbidden', `endpoint ${id} is defined in the operator's WEBHOOK_CONFIG_FILE; it is removed there`);
    }
    const removed = await this.redis.eval(REMOVE, 2, this.keys.endpoints(tenant), this.keys.subscribed, id, tenant, this.configured.has(tenant) ? '1' : '');
    return removed === 1;
  }

  /**
   * A callback URL for a job or batch: it passes the registration checks and shares its origin (scheme, host,
   * port) with one of the tenant's endpoints, whose secret signs what is sent to it. Returns the URL as stored.
   */
  async checkCallback(tenant: string, raw: unknown): Promise<string> {
    const url = this.guard.checkRegistrable(raw);
    if (!(await this.endpointForOrigin(tenant, url.toString()))) {
      throw new ModerationError('callback_not_registered', `callback_url origin ${url.origin} is not one of the tenant's registered webhook endpoints`, {
        origin: url.origin,
      });
    }
    return url.toString();
  }

  /** The tenant's endpoint with the same origin as `url` (the one with the same URL first), or undefined. */
  async endpointForOrigin(tenant: string, url: string): Promise<Endpoint | undefined> {
    const origin = new URL(url).origin;
    const same = (await this.list(tenant)).filter((e) => new URL(e.url).origin === origin);
    return same.find((e) => e.url === url) ?? same[0];
  }
}
