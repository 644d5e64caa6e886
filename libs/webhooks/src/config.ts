/**
 * The webhook settings (rows of @libs/settings, documented in docs/deploy.md), with their defaults in one place,
 * and the operator's endpoint file (WEBHOOK_CONFIG_FILE).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '@libs/contracts';
import { readSetting } from '@libs/settings';
import { secretKey } from './signer';
import { DEFAULT_WEBHOOK_MAX_RESPONSE_BYTES, DEFAULT_WEBHOOK_TIMEOUT_MS } from './webhook-client';

export const WEBHOOK_ENV = {
  allowedTargets: 'WEBHOOK_ALLOWED_TARGETS',
  configFile: 'WEBHOOK_CONFIG_FILE',
  maxEndpoints: 'WEBHOOK_MAX_ENDPOINTS',
  timeoutMs: 'WEBHOOK_TIMEOUT_MS',
  maxResponseBytes: 'WEBHOOK_MAX_RESPONSE_BYTES',
  backoffMs: 'WEBHOOK_BACKOFF_MS',
  giveUpSeconds: 'WEBHOOK_GIVE_UP_SECONDS',
  deadLetterSeconds: 'WEBHOOK_DEAD_LETTER_SECONDS',
  concurrency: 'WEBHOOK_CONCURRENCY',
} as const;

export const WEBHOOK_DEFAULTS = {
  maxEndpoints: 10,
  timeoutMs: DEFAULT_WEBHOOK_TIMEOUT_MS,
  maxResponseBytes: DEFAULT_WEBHOOK_MAX_RESPONSE_BYTES,
  backoffMs: 5000,
  giveUpSeconds: 86_400,
  deadLetterSeconds: 7 * 86_400,
  concurrency: 32,
} as const;

/** An endpoint of the operator's file: read-only through the API. */
export interface ConfiguredEndpoint {
  url: string;
  secret: string;
  events: WebhookEventType[];
}

export interface WebhookConfig {
  allowedTargets: string[];
  /** tenant -> endpoints of WEBHOOK_CONFIG_FILE. */
  configured: Map<string, ConfiguredEndpoint[]>;
  maxEndpoints: number;
  timeoutMs: number;
  maxResponseBytes: number;
  backoffMs: number;
  giveUpMs: number;
  deadLetterSeconds: number;
  concurrency: number;
}

const ConfigFileSchema = z.strictObject({
  tenants: z.record(
    z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a tenant name'),
    z.array(
      z.strictObject({
        url: z.string(),
        secret: z.string().refine((s) => {
          try {
            secretKey(s);
            return true;
          } catch {
            return false;
          }
        }, 'a secret is whsec_ + base64 of 24 to 64 bytes'),
        events: z.array(z.enum(WEBHOOK_EVENT_TYPES)).min(1).optional(),
      }),
    ),
  ),
});

/** `{ "tenants": { "<tenant>": [{ "url", "secret": "whsec_...", "events"? }] } }`; throws naming the file on a bad one. */
export function readWebhookConfigFile(path: string): Map<string, ConfiguredEndpoint[]> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${WEBHOOK_ENV.configFile} ${path}: ${(err as Error).message}`);
  }
  const parsed = ConfigFileSchema.safeParse(doc);
  if (!parsed.success) throw new Error(`${WEBHOOK_ENV.configFile} ${path}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const out = new Map<string, ConfiguredEndpoint[]>();
  for (const [tenant, endpoints] of Object.entries(parsed.data.tenants)) {
    if (endpoints.length)
      out.set(
        tenant,
        endpoints.map((e) => ({ url: e.url, secret: e.secret, events: e.events ?? [...WEBHOOK_EVENT_TYPES] })),
      );
  }
  return out;
}

export function webhookConfigFromEnv(env: NodeJS.ProcessEnv = process.env): WebhookConfig {
  const num = (name: string, fallback: number) => readSetting<number>(env, name) ?? fallback;
  const file = readSetting<string>(env, WEBHOOK_ENV.configFile);
  return {
    allowedTargets: readSetting<string[]>(env, WEBHOOK_ENV.allowedTargets) ?? [],
    configured: file ? readWebhookConfigFile(file) : new Map(),
    maxEndpoints: num(WEBHOOK_ENV.maxEndpoints, WEBHOOK_DEFAULTS.maxEndpoints),
    timeoutMs: num(WEBHOOK_ENV.timeoutMs, WEBHOOK_DEFAULTS.timeoutMs),
    maxResponseBytes: num(WEBHOOK_ENV.maxResponseBytes, WEBHOOK_DEFAULTS.maxResponseBytes),
    backoffMs: num(WEBHOOK_ENV.backoffMs, WEBHOOK_DEFAULTS.backoffMs),
    giveUpMs: num(WEBHOOK_ENV.giveUpSeconds, WEBHOOK_DEFAULTS.giveUpSeconds) * 1000,
    deadLetterSeconds: num(WEBHOOK_ENV.deadLetterSeconds, WEBHOOK_DEFAULTS.deadLetterSeconds),
    concurrency: num(WEBHOOK_ENV.concurrency, WEBHOOK_DEFAULTS.concurrency),
  };
}
