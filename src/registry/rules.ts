/**
 * What the registry accepts as a hostname, a tag, a trust reason, an endpoint
 * and a search query. Each check returns the normalised value or a sentence
 * saying what is wrong (sent back as `invalid_argument`).
 */
import { isIP } from "node:net";
import { isReservedNode } from "../protocol/address.ts";
import { formatIp, parseIp, unmapIpv4 } from "../protocol/beacon-message.ts";

export const HOSTNAME_MAX = 63;
const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/**
 * Names an agent may not claim: the reference's three, the rendezvous roles,
 * and every all-digit name (the CLI reads a bare number as a node id).
 */
export const RESERVED_HOSTNAMES: ReadonlySet<string> = new Set([
  "localhost",
  "backbone",
  "broadcast",
  "registry",
  "beacon",
  "nameserver",
  "rendezvous",
]);

export const MAX_TAGS = 10;
export const TAG_MAX = 32;
const TAG = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

export const REASON_MAX = 500;
export const MAX_ENDPOINTS = 8;
export const SEARCH_QUERY_MAX = 63;
export const SEARCH_RESULTS_MAX = 50;

export type Check<T> = { ok: true; value: T } | { ok: false; message: string };
const good = <T>(value: T): Check<T> => ({ ok: true, value });
const bad = <T>(message: string): Check<T> => ({ ok: false, message });

export function checkHostname(name: unknown): Check<string> {
  if (typeof name !== "string") return bad("hostname must be a string");
  if (name.length > HOSTNAME_MAX) return bad(`hostname is longer than ${HOSTNAME_MAX} characters`);
  if (!HOSTNAME.test(name)) {
    return bad(`hostname "${name}" must be lowercase letters, digits and inner hyphens (1-${HOSTNAME_MAX} characters)`);
  }
  if (/^[0-9]+$/.test(name)) return bad(`hostname "${name}" is all digits, which reads as a node id`);
  if (RESERVED_HOSTNAMES.has(name)) return bad(`hostname "${name}" is reserved`);
  return good(name);
}

/** One tag: a leading "#" is dropped, then the tag rule applies. */
export function checkTag(tag: unknown): Check<string> {
  if (typeof tag !== "string") return bad("tags must be strings");
  const t = tag.startsWith("#") ? tag.slice(1) : tag;
  if (t.length === 0 || t.length > TAG_MAX || !TAG.test(t)) {
    return bad(`tag "${t.slice(0, 40)}" must be 1-${TAG_MAX} lowercase letters, digits and inner hyphens`);
  }
  return good(t);
}

/** A whole tag list: at most MAX_TAGS after removing duplicates; order kept. */
export function checkTags(tags: unknown): Check<string[]> {
  if (!Array.isArray(tags)) return bad("tags must be an array of strings");
  if (tags.length > MAX_TAGS * 2) return bad(`at most ${MAX_TAGS} tags`);
  const out: string[] = [];
  for (const raw of tags) {
    const t = checkTag(raw);
    if (!t.ok) return t;
    if (!out.includes(t.value)) out.push(t.value);
  }
  if (out.length > MAX_TAGS) return bad(`at most ${MAX_TAGS} tags`);
  return good(out);
}

/**
 * Reasons are shown in the target's terminal, so control characters (which
 * could carry escape sequences) and bidirectional overrides are refused.
 */
const FORBIDDEN_IN_TEXT = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

export function checkReason(reason: unknown, field = "reason"): Check<string> {
  if (typeof reason !== "string") return bad(`${field} must be a string`);
  if ([...reason].length > REASON_MAX) return bad(`${field} is longer than ${REASON_MAX} characters`);
  if (FORBIDDEN_IN_TEXT.test(reason)) return bad(`${field} contains control or direction-override characters`);
  if (reason.isWellFormed && !reason.isWellFormed()) return bad(`${field} contains an unpaired surrogate`);
  return good(reason);
}

/** A node id another node may name: a u32 that the registry could have assigned. */
export function checkNodeId(id: unknown, field: string): Check<number> {
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 0xffff_ffff) return bad(`${field} must be a node id (u32)`);
  if (isReservedNode(id)) return bad(`${field} ${id} is a reserved node id`);
  return good(id);
}

/** "ip:port" with an IPv4 literal or "[ipv6]:port"; port 1-65535. Returned in canonical text. */
export function checkEndpoint(text: unknown): Check<string> {
  if (typeof text !== "string" || text.length > 64) return bad("an endpoint must be an \"ip:port\" string");
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return bad(`endpoint "${text}" must be [ipv6]:port`);
    host = text.slice(1, close);
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) return bad(`endpoint "${text}" must be ip:port`);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return bad(`endpoint "${text}" has no valid port`);
  const port = Number(portText);
  if (port < 1 || port > 65535) return bad(`endpoint "${text}" has port outside 1-65535`);
  const family = isIP(host);
  if (family === 4 && !text.startsWith("[")) return good(`${host}:${port}`);
  if (family === 6 && text.startsWith("[")) {
    const bytes = parseIp(host);
    if (!bytes.ok) return bad(`endpoint "${text}" must be an IP literal and port (no names, no zones)`);
    const canonical = unmapIpv4(formatIp(bytes.value));
    return good(isIP(canonical) === 4 ? `${canonical}:${port}` : `[${canonical}]:${port}`);
  }
  return bad(`endpoint "${text}" must be an IP literal and port (no names)`);
}

export function checkEndpoints(list: unknown): Check<string[]> {
  if (!Array.isArray(list)) return bad("endpoints must be an array of \"ip:port\" strings");
  if (list.length > MAX_ENDPOINTS) return bad(`at most ${MAX_ENDPOINTS} endpoints`);
  const out: string[] = [];
  for (const e of list) {
    const c = checkEndpoint(e);
    if (!c.ok) return c;
    if (!out.includes(c.value)) out.push(c.value);
  }
  return good(out);
}

/** An endpoint whose host is 0.0.0.0 or [::] means "this port, at the IP the registry observes". */
export function isUnspecifiedEndpoint(endpoint: string): boolean {
  return endpoint.startsWith("0.0.0.0:") || endpoint.startsWith("[::]:");
}

export function endpointPort(endpoint: string): number {
  return Number(endpoint.slice(endpoint.lastIndexOf(":") + 1));
}

export function joinEndpoint(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A search query: a tag (leading "#" allowed) or a hostname fragment. */
export function checkSearchQuery(query: unknown): Check<string> {
  if (typeof query !== "string") return bad("query must be a string");
  const q = (query.startsWith("#") ? query.slice(1) : query).toLowerCase();
  if (q.length === 0 || q.length > SEARCH_QUERY_MAX || !/^[a-z0-9-]+$/.test(q)) {
    return bad(`query must be 1-${SEARCH_QUERY_MAX} letters, digits or hyphens (a tag or part of a hostname)`);
  }
  return good(q);
}
