import { describe, expect, it } from 'vitest';
import { ModerationError } from '@libs/contracts';
import { TargetGuard, type LookupAll } from '@libs/webhooks';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof ModerationError ? err.code : `not a ModerationError: ${(err as Error).message}`;
  }
  return undefined;
};
const asyncCodeOf = async (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (err) => (err instanceof ModerationError ? err.code : `not a ModerationError: ${(err as Error).message}`),
  );

/** A DNS answer fixed per name: how a test makes a public-looking name resolve to what it likes. */
const fixedDns =
  (answers: Record<string, string[]>): LookupAll =>
  async (host) =>
    (answers[host] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

describe('TargetGuard: URL form', () => {
  const guard = new TargetGuard();

  it('takes absolute https URLs without credentials and drops the fragment', () => {
    expect(guard.parse('https://hooks.example.com/a?b=1#frag').toString()).toBe('https://hooks.example.com/a?b=1');
  });

  it('refuses other schemes, credentials, relative and over-long URLs, and plain http unless allowed (400 invalid_webhook_url)', () => {
    for (const bad of [
      'ftp://hooks.example.com/',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'https://user:pw@hooks.example.com/',
      'https://token@hooks.example.com/',
      '/relative/path',
      'not a url',
      '',
      42,
      `https://hooks.example.com/${'a'.repeat(2048)}`,
      'http://hooks.example.com/',
    ]) {
      expect(
        codeOf(() => guard.parse(bad)),
        String(bad).slice(0, 60),
      ).toBe('invalid_webhook_url');
    }
    expect(new TargetGuard(['hooks.example.com']).parse('http://hooks.example.com/').protocol).toBe('http:');
  });
});

describe('TargetGuard: registration refuses literal non-public addresses (422 webhook_target_forbidden)', () => {
  const guard = new TargetGuard();
  const forbidden = [
    'https://10.1.2.3/',
    'https://127.0.0.1/',
    'https://127.8.9.10:8443/',
    'https://169.254.169.254/latest/meta-data/',
    'https://[::1]/',
    'https://[::ffff:127.0.0.1]/',
    'https://[::ffff:a9fe:a9fe]/',
    'https://[fe80::1]/',
    'https://[fd12:3456::1]/',
    'https://[::]/',
    'https://0.0.0.0/',
    'https://100.64.0.1/',
    'https://172.16.5.4/',
    'https://192.168.1.1/',
    'https://224.0.0.1/',
    'https://255.255.255.255/',
    'https://192.0.2.10/',
    'https://[2001:db8::1]/',
    'https://[64:ff9b::a00:1]/',
    'https://2130706433/', // 127.0.0.1 as one number: the URL parser normalises it
    'https://0x7f.1/',
    'https://localhost/',
    'https://api.localhost/',
  ];
  it.each(forbidden)('%s', (url) => {
    expect(codeOf(() => guard.checkRegistrable(url))).toBe('webhook_target_forbidden');
  });

  it('public literal addresses and names pass (names are checked by DNS at delivery)', () => {
    for (const url of ['https://93.184.215.14/', 'https://[2606:4700::1111]/', 'https://[::ffff:8.8.8.8]/', 'https://hooks.example.com/x']) {
      expect(() => guard.checkRegistrable(url), url).not.toThrow();
    }
  });

  it('the allow-list (hosts, IPs, CIDRs) lets the operator reach internal receivers, over http too', () => {
    const allowed = new TargetGuard(['127.0.0.1', '10.20.0.0/16', 'receiver.internal', 'fd00::/8']);
    for (const url of ['http://127.0.0.1:8080/hook', 'https://[::ffff:127.0.0.1]/', 'http://10.20.3.4/', 'http://receiver.internal/', 'https://[fd00::5]/']) {
      expect(() => allowed.checkRegistrable(url), url).not.toThrow();
    }
    for (const url of ['https://127.0.0.2/', 'https://10.21.0.1/', 'https://localhost/', 'https://[::1]/']) {
      expect(
        codeOf(() => allowed.checkRegistrable(url)),
        url,
      ).toBe('webhook_target_forbidden');
    }
    expect(() => new TargetGuard(['10.0.0.0/33'])).toThrow(/not a valid IP address or CIDR/);
  });
});

describe('TargetGuard: delivery-time DNS', () => {
  it('refuses a name that resolves to loopback (localhost, through the system resolver)', async () => {
    expect(await asyncCodeOf(new TargetGuard().resolve('https://localhost:9/hook'))).toBe('webhook_target_forbidden');
  });

  it('refuses a name when ANY of its addresses is non-public, and pins the first checked address otherwise', async () => {
    const dns = fixedDns({
      'mixed.example': ['93.184.215.14', '10.0.0.7'],
      'meta.example': ['169.254.169.254'],
      'ok.example': ['93.184.215.14', '2606:4700::1111'],
    });
    const guard = new TargetGuard([], dns);
    expect(await asyncCodeOf(guard.resolve('https://mixed.example/'))).toBe('webhook_target_forbidden');
    expect(await asyncCodeOf(guard.resolve('https://meta.example/'))).toBe('webhook_target_forbidden');
    expect(await guard.resolve('https://ok.example/x')).toMatchObject({ address: '93.184.215.14', family: 4 });
    // A name the operator allowed is not second-guessed by its addresses.
    expect(await new TargetGuard(['meta.example'], dns).resolve('https://meta.example/')).toMatchObject({ address: '169.254.169.254' });
    // An address allowed by CIDR passes, the others of the answer still count.
    expect(await new TargetGuard(['10.0.0.0/8'], dns).resolve('https://mixed.example/')).toMatchObject({ address: '93.184.215.14' });
  });

  it('a lookup failure is an ordinary (retryable) error, not a refusal', async () => {
    const failing: LookupAll = async () => {
      throw new Error('ENOTFOUND');
    };
    const err = await new TargetGuard([], failing).resolve('https://nowhere.example/').catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(ModerationError);
  });
});
