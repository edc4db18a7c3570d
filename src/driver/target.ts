/**
 * What an app may name a peer by: a full address (`1:0001.F291.0004`), a
 * bare decimal node id (`11`, network 0), or a hostname (`agent-a`) that
 * the daemon resolves through the registry.
 *
 * Two URL-friendly spellings exist because a URL's host cannot hold a full
 * address (the ":" reads as a port) and URL parsers rewrite a bare number
 * as an IPv4 address (`http://11/` has the host `0.0.0.11`):
 * - the address without its redundant decimal prefix, `0001.F291.0004`
 *   (the first hex group is the network), and
 * - an IPv4-shaped host `a.b.c.d`, read as node id `a<<24|b<<16|c<<8|d` on network 0.
 */
import { addressOf, parseAddress, type Address } from "../protocol/address.ts";
import { NodeError } from "./errors.ts";

export type Target = { kind: "address"; address: Address } | { kind: "hostname"; hostname: string };

const NODE_ID = /^[0-9]{1,10}$/;
const HEX_GROUPS = /^([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})$/;
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
