/**
 * Address classification for the SSRF guard: which IPv4 and IPv6 addresses are not public Internet hosts. The
 * ranges are the IANA special-purpose registries' (RFC 6890 and its updates) that a webhook must never reach:
 * private, loopback, link-local, unique-local, CGNAT, multicast, unspecified, broadcast, documentation and
 * benchmarking, plus the IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4), which are judged by the
 * address they embed.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** An address as bytes (4 or 16). */
type Bytes = number[];

export interface Cidr {
  bytes: Bytes;
  prefix: number;
}

function parseIPv4(text: string): Bytes | null {
  if (!isIPv4(text)) return null;
  return text.split('.').map(Number);
}

function parseIPv6(text: string): Bytes | null {
  const bare = text.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (!isIPv6(bare)) return null;
  let hex = bare;
  // A trailing dotted quad (::ffff:1.2.3.4) is the last two groups.
  const quad = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(hex);
  if (quad) {
    const v4 = parseIPv4(quad[2]);
    if (!v4) return null;
    hex = `${quad[1]}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const halves = hex.split('::');
  if (halves.length > 2) return null;
  const left = halves[0] ? halves[0].split(':') : [];
  const right = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const groups = [...left, ...new Array<string>(halves.length === 2 ? 8 - left.length - right.length : 0).fill('0'), ...right];
  if (groups.length !== 8) return null;
  return groups.flatMap((g) => {
    const v = parseInt(g, 16);
    return [v >> 8, v & 0xff];
  });
}

/** 4 bytes for IPv4, 16 for IPv6 (brackets and a zone id are dropped), null for anything else. */
export function parseIp(text: string): Bytes | null {
  return parseIPv4(text) ?? parseIPv6(text);
}

export function parseCidr(text: string): Cidr | null {
  const [addr, len, extra] = text.split('/');
  if (extra !== undefined) return null;
  const bytes = parseIp(addr);
  if (!bytes) return null;
  const max = bytes.length * 8;
  const prefix = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return null;
  return { bytes, prefix };
}

export function inCidr(bytes: Bytes, cidr: Cidr): boolean {
  if (bytes.length !== cidr.bytes.length) return false;
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const i = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if ((bytes[i] & mask) !== (cidr.bytes[i] & mask)) return false;
  }
  return true;
}

const range = (text: string, label: string) => ({ cidr: parseCidr(text)!, label });

const V4_RANGES = [
  range('0.0.0.0/8', 'unspecified ("this network")'),
  range('10.0.0.0/8', 'private'),
  range('100.64.0.0/10', 'carrier-grade NAT'),
  range('127.0.0.0/8', 'loopback'),
  range('169.254.0.0/16', 'link-local'),
  range('172.16.0.0/12', 'private'),
  range('192.0.0.0/24', 'IETF protocol assignments'),
  range('192.0.2.0/24', 'documentation'),
  range('192.88.99.0/24', '6to4 relay anycast'),
  range('192.168.0.0/16', 'private'),
  range('198.18.0.0/15', 'benchmarking'),
  range('198.51.100.0/24', 'documentation'),
  range('203.0.113.0/24', 'documentation'),
  range('224.0.0.0/4', 'multicast'),
  range('240.0.0.0/4', 'reserved (broadcast included)'),
];

const V6_RANGES = [
  range('::/128', 'unspecified'),
  range('::1/128', 'loopback'),
  range('::/96', 'IPv4-compatible (deprecated)'),
  range('64:ff9b:1::/48', 'local-use NAT64'),
  range('100::/64', 'discard-only'),
  range('2001::/23', 'IETF protocol assignments (Teredo included)'),
  range('2001:db8::/32', 'documentation'),
  range('3fff::/20', 'documentation'),
  range('fc00::/7', 'unique local'),
  range('fe80::/10', 'link-local'),
  range('fec0::/10', 'site-local (deprecated)'),
  range('ff00::/8', 'multicast'),
];

/** IPv6 forms that carry an IPv4 address: judged by that address. */
const EMBEDDING = [
  { cidr: parseCidr('::ffff:0:0/96')!, at: 12, label: 'IPv4-mapped' },
  { cidr: parseCidr('64:ff9b::/96')!, at: 12, label: 'NAT64' },
  { cidr: parseCidr('2002::/16')!, at: 2, label: '6to4' },
];

/** Why an address is not a public unicast host (e.g. "loopback"), or null when it is one. */
export function nonPublicReason(bytes: Bytes): string | null {
  if (bytes.length === 4) return V4_RANGES.find((r) => inCidr(bytes, r.cidr))?.label ?? null;
  for (const e of EMBEDDING) {
    if (!inCidr(bytes, e.cidr)) continue;
    const inner = nonPublicReason(bytes.slice(e.at, e.at + 4));
    return inner ? `${e.label} ${inner}` : null;
  }
  return V6_RANGES.find((r) => inCidr(bytes, r.cidr))?.label ?? null;
}

/** The IPv4 address an IPv6 one embeds (mapped, NAT64, 6to4), for matching IPv4 allow-list entries. */
export function embeddedIPv4(bytes: Bytes): Bytes | null {
  if (bytes.length !== 16) return null;
  const e = EMBEDDING.find((x) => inCidr(bytes, x.cidr));
  return e ? bytes.slice(e.at, e.at + 4) : null;
}
