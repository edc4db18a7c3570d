/**
 * The endpoints a daemon registers with the registry, from its listen address
 * and the host's interface addresses (a pure function of both; run.ts reads
 * the interfaces).
 *
 * A wildcard listen registers "0.0.0.0:P" (the registry fills in the IP it
 * sees the daemon's connection come from), then the host's own addresses:
 * candidates for peers that can reach them straight (the same LAN, or IPv6
 * with no NAT at all), and how peers tell that we are not behind a NAT.
 * IPv6 addresses count only on a dual-stack (`::`) socket, and only global
 * unicast (2000::/3): link-local, loopback, ULA and the rest reach nobody
 * beyond this network, except that `allowUla` admits ULA (fd00::/8), for
 * labs and private v6 networks (`PILOT_IPV6_ULA=1`).
 */
import { parseIp } from "../protocol/beacon-message.ts";

/** At most this many endpoints in a registration (the registry's MAX_ENDPOINTS). */
const MAX_ENDPOINTS = 8;
/** IPv6 addresses registered at most (a host with privacy addresses has many). */
const MAX_IPV6 = 2;

export interface InterfaceAddress {
  readonly address: string;
  readonly family: string | number;
  readonly internal: boolean;
}

/** Is this IPv6 literal one peers elsewhere can send to (2000::/3; fd00::/8 with `allowUla`)? */
export function isAdvertisableIpv6(ip: string, allowUla: boolean): boolean {
  if (!ip.includes(":") || ip.includes("%")) return false;
  const bytes = parseIp(ip);
  if (!bytes.ok || bytes.value.length !== 16) return false;
  const first = bytes.value[0]!;
  return (first & 0xe0) === 0x20 || (allowUla && first === 0xfd);
}

function family(a: InterfaceAddress): 4 | 6 | 0 {
  return a.family === "IPv4" || a.family === 4 ? 4 : a.family === "IPv6" || a.family === 6 ? 6 : 0;
}

/**
 * What to register for a socket on `host`:`port`. `dualStack`: the socket is
 * bound to `::` and carries IPv4 too (then "0.0.0.0:P" stands for its IPv4
 * side, exactly as for a `0.0.0.0` socket).
 */
export function registeredEndpoints(host: string, port: number, dualStack: boolean, interfaces: readonly InterfaceAddress[], allowUla: boolean): string[] {
  const wildcard = host === "0.0.0.0" || host === "::";
  if (!wildcard) return [host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`];
  const v4: string[] = [];
  const v6: string[] = [];
  for (const a of interfaces) {
    if (a.internal) continue;
    const f = family(a);
    if (f === 4 && (host === "0.0.0.0" || dualStack)) v4.push(`${a.address}:${port}`);
    else if (f === 6 && host === "::" && isAdvertisableIpv6(a.address, allowUla)) v6.push(`[${a.address}]:${port}`);
  }
  const own = host === "::" && !dualStack ? `[::]:${port}` : `0.0.0.0:${port}`;
  const six = [...new Set(v6)].slice(0, MAX_IPV6);
  // IPv4 keeps the room it had before IPv6 (six host addresses) unless IPv6 needs it.
  const four = [...new Set(v4)].slice(0, Math.min(6, MAX_ENDPOINTS - 1 - six.length));
  return [own, ...six, ...four];
}
