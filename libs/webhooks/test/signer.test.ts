import { describe, expect, it } from 'vitest';
import { generateSecret, secretKey, verifyWebhook, WebhookSigner, WebhookVerificationError } from '@libs/webhooks';

/**
 * The Standard Webhooks test vector (the specification's reference libraries carry it); the expected value was
 * checked independently with
 *   printf '%s' 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' \
 *     | openssl dgst -sha256 -mac HMAC -macopt hexkey:31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0 -binary | base64
 * (the hex key is the base64 after whsec_, decoded).
 */
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const TS = 1614265330;
const BODY = '{"test": 2432232314}';
const EXPECTED = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';

describe('WebhookSigner (Standard Webhooks)', () => {
  it('signs `<id>.<timestamp>.<body>` with HMAC-SHA256 keyed by the decoded secret: the hand-computed value', () => {
    const headers = new WebhookSigner(SECRET).headers(ID, BODY, TS * 1000 + 999);
    expect(headers).toEqual({ 'webhook-id': ID, 'webhook-timestamp': String(TS), 'webhook-signature': EXPECTED });
  });

  it('verify: accepts the signature within the tolerance, among several, and refuses tampering, another secret and stale timestamps', () => {
    const headers = { 'webhook-id': ID, 'webhook-timestamp': String(TS), 'webhook-signature': EXPECTED };
    const now = TS * 1000;
    expect(verifyWebhook(SECRET, headers, BODY, { now })).toEqual({ test: 2432232314 });
    expect(verifyWebhook(SECRET, { ...headers, 'webhook-signature': `v1,bm90IGl0 ${EXPECTED}` }, BODY, { now: now + 299_000 })).toEqual({ test: 2432232314 });
    const refused =
      (h: Record<string, string>, body = BODY, at = now, secret = SECRET) =>
      () =>
        verifyWebhook(secret, h, body, { now: at });
    expect(refused(headers, '{"test": 2432232315}')).toThrow(WebhookVerificationError);
    expect(refused(headers, BODY, now, generateSecret())).toThrow(/no matching v1 signature/);
    expect(refused({ ...headers, 'webhook-id': 'msg_other' })).toThrow(WebhookVerificationError);
    expect(refused(headers, BODY, now + 301_000)).toThrow(/tolerance/);
    expect(refused(headers, BODY, now - 301_000)).toThrow(/tolerance/);
    expect(refused({ ...headers, 'webhook-signature': EXPECTED.replace('v1,', 'v2,') })).toThrow(WebhookVerificationError);
    expect(refused({ 'webhook-id': ID, 'webhook-timestamp': String(TS) })).toThrow(/missing/);
  });

  it('secrets: whsec_ + base64 of 32 random bytes; malformed ones are refused', () => {
    const a = generateSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(secretKey(a)).toHaveLength(32);
    expect(generateSecret()).not.toBe(a);
    expect(() => secretKey('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).toThrow(/whsec_/);
    expect(() => secretKey('whsec_c2hvcnQ=')).toThrow(/24 to 64/);
    expect(() => secretKey('whsec_not base64!')).toThrow(/base64/);
  });
});
