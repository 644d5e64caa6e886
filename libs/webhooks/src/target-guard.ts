/**
 * The SSRF rules of webhook targets, in one place: what URL may be registered (or given as a callback) and which
 * address a delivery may connect to. A webhook URL is chosen by a tenant, so without these rules a tenant could make
 * the notifier POST to the cloud metadata service (169.254.169.254), Redis, or any internal service. Public
 * addresses are allowed; private, loopback, link-local, unique-local, CGNAT, multicast, unspecified, broadcast and
 * documentation ones are refused unless the operator lists the host, the IP or its CIDR in WEBHOOK_ALLOWED_TARGETS.
 * Registration checks the URL's form and a literal address; DNS is checked at delivery time (`resolve`), where
 * every address a name resolves to must pass and the connection is pinned to the checked one.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { ModerationError } from '@libs/contracts';
import { embeddedIPv4, inCidr, nonPublicReason, parseCidr, parseIp, type Cidr } from './ip-ranges';

export const MAX_WEBHOOK_URL_LENGTH = 2048;

/** Where a delivery connects: the URL, and the address its host resolved to and passed the rules. */
export interface ResolvedTarget {
  url: URL;
  address: string;
  family: 4 | 6;
}

/** DNS lookup with every address (node:dns/promises `lookup(host, { all: true })`); a parameter so tests can pin names. */
export type LookupAll = (hostname: string) => Promise<{ address: string; family: number }[]>;

const systemLookup: LookupAll = (hostname) => lookup(hostname, { all: true, verbatim: true });

/** The URL host without IPv6 brackets. */
export function bareHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

export class TargetGuard {
  private readonly hosts = new Set<string>();
  private readonly cidrs: Cidr[] = [];

  /** `allowed`: host names, IP addresses and CIDRs (WEBHOOK_ALLOWED_TARGETS). */
  constructor(
    allowed: readonly string[] = [],
    private readonly lookupAll: LookupAll = systemLookup,
  ) {
    for (const entry of allowed) {
      const text = entry
        .trim()
        .toLowerCase()
        .replace(/^\[|\]$/g, '');
      if (!text) continue;
      const cidr = parseCidr(text);
      if (cidr) this.cidrs.push(cidr);
      else if (text.includes('/') || isIP(text)) throw new Error(`WEBHOOK_ALLOWED_TARGETS: "${entry}" is not a valid IP address or CIDR`);
      else this.hosts.add(text.replace(/\.$/, ''));
    }
  }

  /** An address the operator allowed, directly or (for IPv4-mapped and similar IPv6 forms) by the IPv4 it embeds. */
  private allowedAddress(bytes: number[]): boolean {
    const v4 = embeddedIPv4(bytes);
    return this.cidrs.some((c) => inCidr(bytes, c) || (v4 !== null && inCidr(v4, c)));
  }

  /** Whether the URL's host is allowed as such (a listed host name, or a literal address in a listed range). */
  isAllowedHost(url: URL): boolean {
    const host = bareHost(url).replace(/\.$/, '');
    if (this.hosts.has(host)) return true;
    const bytes = parseIp(host);
    return bytes !== null && this.allowedAddress(bytes);
  }

  /** Why an address may not be reached, or null. */
  refusal(address: string): string | null {
    const bytes = parseIp(address);
    if (!bytes) return 'not an IP address';
    if (this.allowedAddress(bytes)) return null;
    return nonPublicReason(bytes);
  }

  /**
   * The URL's form: absolute http(s), no credentials, at most MAX_WEBHOOK_URL_LENGTH characters, https unless the
   * host is allowed (a plain-http target is an operator's choice for internal receivers). Throws invalid_webhook_url.
   */
  parse(raw: unknown): URL {
    if (typeof raw !== 'string' || raw.length === 0) throw new ModerationError('invalid_webhook_url', 'a webhook URL must be a non-empty string');
    if (raw.length > MAX_WEBHOOK_URL_LENGTH) {
      throw new ModerationError('invalid_webhook_url', `a webhook URL is at most ${MAX_WEBHOOK_URL_LENGTH} characters`, { limit: MAX_WEBHOOK_URL_LENGTH });
    }
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ModerationError('invalid_webhook_url', 'not an absolute URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ModerationError('invalid_webhook_url', `scheme ${url.protocol} is not http(s)`);
    if (url.username || url.password)
      throw new ModerationError('invalid_webhook_url', 'a webhook URL must not carry credentials; verify the signature instead');
    if (!url.hostname) throw new ModerationError('invalid_webhook_url', 'the URL has no host');
    if (url.protocol === 'http:' && !this.isAllowedHost(url)) {
      throw new ModerationError('invalid_webhook_url', 'webhook URLs must be https (plain http only for targets in WEBHOOK_ALLOWED_TARGETS)');
    }
    url.hash = '';
    return url;
  }

  /**
   * The checks at registration (and for a callback_url): the form, and a host that is a literal address or
   * `localhost` must be allowed (422 webhook_target_forbidden). Names are resolved only at delivery time, where
   * their addresses are checked (a name's addresses change; checking once at registration would prove nothing).
   */
  checkRegistrable(raw: unknown): URL {
    const url = this.parse(raw);
    if (this.isAllowedHost(url)) return url;
    const host = bareHost(url);
    if (host === 'localhost' || host.endsWith('.localhost')) {
      throw new ModerationError('webhook_target_forbidden', `${host} is a loopback name; allow it in WEBHOOK_ALLOWED_TARGETS to use it`);
    }
    if (isIP(host)) {
      const reason = this.refusal(host);
      if (reason) throw new ModerationError('webhook_target_forbidden', `${host} is a ${reason} address; webhooks reach public addresses only`, { reason });
    }
    return url;
  }

  /**
   * The address a delivery connects to: the URL's literal address, or every address its name resolves to checked
   * (any refused one refuses the target: a name that resolves to a public and a private address is one DNS
   * answer away from the private one) and the first returned. Throws webhook_target_forbidden.
   */
  async resolve(raw: string): Promise<ResolvedTarget> {
    const url = this.parse(raw);
    const host = bareHost(url);
    const family = isIP(host);
    const allowedHost = this.hosts.has(host.replace(/\.$/, ''));
    if (family) {
      const reason = this.refusal(host);
      if (reason) throw new ModerationError('webhook_target_forbidden', `${host} is a ${reason} address`, { reason });
      return { url, address: host, family: family as 4 | 6 };
    }
    let addresses: { address: string; family: number }[];
    try {
      addresses = await this.lookupAll(host);
    } catch (err) {
      throw new Error(`DNS lookup of ${host} failed: ${(err as Error).message}`);
    }
    if (addresses.length === 0) throw new Error(`DNS lookup of ${host} returned no address`);
    if (!allowedHost) {
      for (const a of addresses) {
        const reason = this.refusal(a.address);
        if (reason) throw new ModerationError('webhook_target_forbidden', `${host} resolves to ${a.address}, a ${reason} address`, { reason });
      }
    }
    return { url, address: addresses[0].address, family: addresses[0].family === 6 ? 6 : 4 };
  }
}
