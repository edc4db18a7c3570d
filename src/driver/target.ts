/**
 * What an app may name a peer by: a full address (`1:0001.F291.0004`), a
 * bare decimal node id (`11`, network 0), or a hostname (`agent-a`) that
 * the daemon resolves through the registry.
 *
 * In a URL (`fetch`, `http.Agent`), an address is written with dashes:
 * `http://0-0000-0000-0004/`. A URL's host cannot hold the full address
 * (the ":" starts the port), and URL parsers rewrite dotted numbers as an
 * IPv4 address (`0000.0100.0000` becomes `0.64.0.0`, octal), so neither
 * `N:NNNN.HHHH.LLLL` nor `NNNN.HHHH.LLLL` survives one. Also accepted:
 * - `NNNN.HHHH.LLLL`, the address without its decimal prefix (outside URLs), and
 * - an IPv4-shaped host `a.b.c.d`, read as node id `a<<24|b<<16|c<<8|d` on
 *   network 0: what a URL parser makes of a node id (`http://11/` has the host `0.0.0.11`).
 */
import { addressOf, formatAddress, networkOf, nodeOf, parseAddress, type Address } from "../protocol/address.ts";
import { NodeError } from "./errors.ts";

export type Target = { kind: "address"; address: Address } | { kind: "hostname"; hostname: string };

const NODE_ID = /^[0-9]{1,10}$/;
const HEX_GROUPS = /^([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})$/;
/** An address as a URL host: `N-NNNN-HHHH-LLLL`. */
const DASHED = /^([0-9]{1,5})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

/** Parses a target; throws NodeError `invalid_argument` for text that is none of the forms. */
export function parseTarget(text: string): Target {
  const t = text.trim();
  if (t.includes(":")) {
    const parsed = parseAddress(t);
    if (!parsed.ok) throw new NodeError("invalid_argument", parsed.error.message, "write addresses as N:NNNN.HHHH.LLLL");
    return { kind: "address", address: parsed.value };
  }
  const dashed = DASHED.exec(t);
  if (dashed) {
    const parsed = parseAddress(`${dashed[1]}:${dashed[2]}.${dashed[3]}.${dashed[4]}`);
    if (!parsed.ok) throw new NodeError("invalid_argument", parsed.error.message, "in a URL, write an address as N-NNNN-HHHH-LLLL, e.g. http://0-0000-0000-0004/");
    return { kind: "address", address: parsed.value };
  }
  if (NODE_ID.test(t)) {
    const node = Number(t);
    if (node > 0xffff_ffff) throw new NodeError("invalid_argument", `node id ${t} is larger than 4294967295`);
    return { kind: "address", address: addressOf(0, node) };
  }
  const hex = HEX_GROUPS.exec(t);
  if (hex) {
    const network = parseInt(hex[1]!, 16);
    return { kind: "address", address: addressOf(network, parseInt(hex[2]!, 16) * 0x10000 + parseInt(hex[3]!, 16)) };
  }
  const ipv4 = IPV4.exec(t);
  if (ipv4) {
    const parts = ipv4.slice(1, 5).map(Number);
    if (parts.every((p) => p <= 255)) {
      return { kind: "address", address: addressOf(0, ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!) };
    }
  }
  if (!HOSTNAME.test(t)) {
    throw new NodeError("invalid_argument", `"${text}" is not a Pilot address, node id or hostname`, "use N:NNNN.HHHH.LLLL, a node id, or a hostname");
  }
  return { kind: "hostname", hostname: t };
}

/** An address as a URL's host: `0-0000-0000-0004` for `0:0000.0000.0004`. */
export function urlHostOf(address: Address): string {
  return formatAddress(address).replace(":", "-").replaceAll(".", "-").toLowerCase();
}

const URL_PARTS = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/s;
const COLON_FORM = /^([0-9]{1,5}:[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?::([0-9]*))?$/;

/**
 * A URL an app wrote with a Pilot address in its host that no URL parser
 * reads as meant: `http://0:0000.0000.0004/` (not a URL: the ":" starts the
 * port) or `http://0000.0100.0000/` (a URL, but of the IPv4 host 0.64.0.0).
 * Returns the error to give, which shows the spelling that works; null when
 * the URL means what it says.
 */
export function misspelledUrl(url: string): NodeError | null {
  const m = URL_PARTS.exec(url.trim());
  if (!m) return null;
  const [, scheme, authority, rest] = m as unknown as [string, string, string, string];
  const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
  const colon = COLON_FORM.exec(hostPort);
  if (colon) {
    const parsed = parseAddress(colon[1]!);
    if (!parsed.ok) return new NodeError("invalid_argument", `"${url}" is not a URL: ${parsed.error.message}`, "in a URL, write an address as N-NNNN-HHHH-LLLL, e.g. http://0-0000-0000-0004/");
    return wrongSpelling(url, `in a URL the ":" of a Pilot address starts the port`, parsed.value, scheme, colon[2], rest);
  }
  const port = /:([0-9]*)$/.exec(hostPort);
  const host = port ? hostPort.slice(0, port.index) : hostPort;
  const dotted = HEX_GROUPS.exec(host);
  if (!dotted) return null;
  const meant = addressOf(parseInt(dotted[1]!, 16), parseInt(dotted[2]!, 16) * 0x10000 + parseInt(dotted[3]!, 16));
  let read: string;
  try {
    read = new URL(`http://${host}/`).hostname;
  } catch {
    return wrongSpelling(url, `URL parsers refuse the host ${host}`, meant, scheme, port?.[1], rest);
  }
  let target: Target | null = null;
  try {
    target = parseTarget(read);
  } catch {
    // not a target at all: wrong in any case
  }
  if (target?.kind === "address" && target.address === meant) return null; // the IPv4 reading names the same node
  return wrongSpelling(url, `URL parsers read the host ${host} as the IPv4 address ${read}, not as ${formatAddress(meant)}`, meant, scheme, port?.[1], rest);
}

function wrongSpelling(url: string, why: string, address: Address, scheme: string, port: string | undefined, rest: string): NodeError {
  const portPart = port !== undefined && port !== "" ? `:${port}` : "";
  const good = `${scheme}${urlHostOf(address)}${portPart}${rest}`;
  const byId = networkOf(address) === 0 ? `, or by node id: ${scheme}${nodeOf(address)}${portPart}${rest}` : "";
  return new NodeError("invalid_argument", `"${url}": ${why}`, `write the address with dashes: ${good}${byId} (or use the node's hostname)`);
}
