/**
 * IPv4 subnets for the gateway: parsing `10.4.0.0/16`, and choosing local IPs.
 *
 * Automatic allocation counts upward from the first address after the network
 * address and skips every address whose last byte is 0 or 255 (some stacks
 * and tools treat those as network or broadcast addresses even inside larger
 * subnets), the subnet's own network and broadcast addresses, and whatever the
 * caller says is taken. Pure functions: no sockets, no interfaces.
 */

export interface Subnet {
  /** The network address as a 32-bit unsigned integer. */
  readonly network: number;
  readonly prefix: number;
  /** Canonical text, e.g. "10.4.0.0/16". */
  readonly text: string;
}

/** The narrowest subnet accepted: /30 still holds two usable addresses. */
export const MAX_PREFIX = 30;
/** The widest: /8 (the whole of 127.0.0.0/8, or 10.0.0.0/8). */
export const MIN_PREFIX = 8;

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted-quad IPv4 address; null if malformed. */
export function parseIPv4(text: string): number | null {
  const m = IPV4.exec(text.trim());
  if (!m) return null;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part.startsWith("0")) return null; // "010" is ambiguous (octal to some tools)
    const n = Number(part);
    if (n > 255) return null;
    value = value * 256 + n;
  }
  return value;
}

export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join(".");
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffff_ffff << (32 - prefix)) >>> 0;
}

export type SubnetResult = { ok: true; subnet: Subnet } | { ok: false; message: string };

/**
 * Parses `A.B.C.D/N`. Host bits must be zero (`10.4.0.1/16` is refused: it
 * would be unclear whether allocation starts at .1 or .2).
 */
export function parseSubnet(text: string): SubnetResult {
  const t = text.trim();
  const slash = t.indexOf("/");
  if (slash < 0) return { ok: false, message: `"${text}" is not a subnet: write it as A.B.C.D/N, e.g. 10.4.0.0/16` };
  const address = parseIPv4(t.slice(0, slash));
  const prefixText = t.slice(slash + 1);
  const prefix = /^\d{1,2}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (address === null) return { ok: false, message: `"${t.slice(0, slash)}" is not an IPv4 address (only IPv4 subnets are supported)` };
  if (!(prefix >= MIN_PREFIX && prefix <= MAX_PREFIX)) {
    return { ok: false, message: `the prefix length of "${text}" must be ${MIN_PREFIX} to ${MAX_PREFIX}` };
  }
  const network = (address & mask(prefix)) >>> 0;
  if (network !== address) {
    return { ok: false, message: `"${text}" has host bits set; the subnet is ${formatIPv4(network)}/${prefix}` };
  }
  if (address >>> 24 === 0 || address >>> 28 >= 14) {
    return { ok: false, message: `"${text}" is not a usable unicast range (0.0.0.0/8, multicast and reserved ranges are refused)` };
  }
  return { ok: true, subnet: { network, prefix, text: `${formatIPv4(network)}/${prefix}` } };
}

export function contains(subnet: Subnet, ip: number): boolean {
  return ((ip & mask(subnet.prefix)) >>> 0) === subnet.network;
}

/** The last address of the subnet (its broadcast address). */
export function lastAddress(subnet: Subnet): number {
  return (subnet.network | (~mask(subnet.prefix) >>> 0)) >>> 0;
}

/** True for a subnet inside 127.0.0.0/8. */
export function isLoopbackSubnet(subnet: Subnet): boolean {
  return subnet.network >>> 24 === 127;
}

/**
 * Why `ip` cannot be a gateway address of `subnet` (outside it, its network
 * or broadcast address, or a .0/.255 address), or null if it can.
 */
export function unusableReason(subnet: Subnet, ip: number): string | null {
  if (!contains(subnet, ip)) return `${formatIPv4(ip)} is outside the gateway's subnet ${subnet.text}`;
  if (ip === subnet.network) return `${formatIPv4(ip)} is the network address of ${subnet.text}`;
  if (ip === lastAddress(subnet)) return `${formatIPv4(ip)} is the broadcast address of ${subnet.text}`;
  const last = ip & 0xff;
  if (last === 0 || last === 255) return `${formatIPv4(ip)} ends in .${last}, which some tools read as a network or broadcast address`;
  if (ip === 0x7f000001) return "127.0.0.1 is this machine's own loopback address";
  return null;
}

/**
 * The addresses automatic allocation hands out, in order, skipping `taken`.
 * A generator so a caller can try the next one when an address turns out to
 * be busy.
 */
export function* candidates(subnet: Subnet, taken: (ip: number) => boolean): Generator<number> {
  const end = lastAddress(subnet);
  for (let ip = subnet.network + 1; ip < end; ip++) {
    if (unusableReason(subnet, ip) !== null) continue;
    if (taken(ip)) continue;
    yield ip;
  }
}
