/**
 * Webhook signatures per the Standard Webhooks specification (https://www.standardwebhooks.com): each delivery
 * carries `webhook-id` (the event id, the same on every attempt, for de-duplication), `webhook-timestamp` (unix
 * seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over `<id>.<timestamp>.<body>`, keyed
 * with the secret's bytes: the base64 after the `whsec_` prefix. Any Standard Webhooks library verifies them.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
/** Bytes of a generated secret (the specification asks for 24 to 64). */
export const SECRET_BYTES = 32;
/** How far a receiver lets webhook-timestamp drift from its clock (replay protection): 5 minutes, the spec's. */
export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

export interface WebhookHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/** A secret's key bytes; throws on a secret that is not whsec_ + base64 of 24 to 64 bytes. */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error(`a webhook secret starts with ${SECRET_PREFIX}`);
  const b64 = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error('a webhook secret is whsec_ followed by base64');
  const key = Buffer.from(b64, 'base64');
  if (key.length < 24 || key.length > 64) throw new Error('a webhook secret holds 24 to 64 bytes');
  return key;
}

/** Signs deliveries with one endpoint's secret. */
export class WebhookSigner {
  private readonly key: Buffer;

  constructor(secret: string) {
    this.key = secretKey(secret);
  }

  /** The base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`, without the `v1,` prefix. */
  digest(id: string, timestamp: number, body: string): string {
    return createHmac('sha256', this.key).update(`${id}.${timestamp}.${body}`).digest('base64');
  }

  /** The three headers of one attempt at `now` (ms). */
  headers(id: string, body: string, now = Date.now()): WebhookHeaders {
    const timestamp = Math.floor(now / 1000);
    return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${this.digest(id, timestamp, body)}` };
  }
}

export class WebhookVerificationError extends Error {
  readonly name = 'WebhookVerificationError';
}

/**
 * What a receiver does (and the tests do): checks webhook-timestamp is within `toleranceSeconds` of now and that
 * one of the space-separated `v1,` signatures matches, in constant time. Returns the body parsed; throws
 * WebhookVerificationError otherwise.
 */
export function verifyWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  options: { toleranceSeconds?: number; now?: number } = {},
): unknown {
  const one = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const id = one('webhook-id');
  const timestamp = one('webhook-timestamp');
  const signatures = one('webhook-signature');
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature');
  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError('webhook-timestamp is not unix seconds');
  const nowSeconds = Math.floor((options.now ?? Date.now()) / 1000);
  if (Math.abs(nowSeconds - Number(timestamp)) > (options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) {
    throw new WebhookVerificationError('webhook-timestamp is outside the tolerance');
  }
  const expected = Buffer.from(new WebhookSigner(secret).digest(id, Number(timestamp), body), 'base64');
  const ok = signatures.split(' ').some((entry) => {
    const [version, sig] = entry.split(',', 2);
    if (version !== 'v1' || !sig) return false;
    const given = Buffer.from(sig, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!ok) throw new WebhookVerificationError('no matching v1 signature');
  return JSON.parse(body);
}
