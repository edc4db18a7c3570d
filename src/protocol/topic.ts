/**
 * Pub/sub topics and subscription patterns (port 1002), pure.
 *
 * A topic is dot-separated words: `sensors.kitchen.temp`. Case matters.
 * - at most MAX_TOPIC_LENGTH (256) characters and MAX_TOPIC_SEGMENTS (32) segments;
 * - no empty segment (`a..b`, `.a`, `a.` are refused);
 * - a segment is letters, digits and `_ - : @ ~` (ASCII only).
 *
 * A pattern (what a subscription names) may also use wildcards, each a whole segment:
 * - `*` matches exactly one segment: `sensors.*.temp` matches `sensors.kitchen.temp`;
 * - `>` matches one or more segments and must be the last: `sensors.>` matches
 *   `sensors.kitchen` and `sensors.kitchen.temp`, but not `sensors` itself (as in NATS);
 * - `#` is accepted as an alias of `>` (MQTT spelling); patterns are kept with `>`.
 * Published topics never contain wildcards.
 *
 *   parseTopic(text): Result<string[]>        the segments of a concrete topic
 *   parsePattern(text): Result<string[]>      the segments of a pattern ("#" written as ">")
 *   topicMatches(pattern, topic): boolean     segments against segments
 *   new TopicTree<T>()                        an index of patterns: add / remove / match(topic)
 */
import { fail, ok, type Result } from "./result.ts";

export const MAX_TOPIC_LENGTH = 256;
export const MAX_TOPIC_SEGMENTS = 32;
/** One segment: matches a single topic segment. */
export const WILDCARD_ONE = "*";
/** Last segment: matches one or more topic segments. */
export const WILDCARD_REST = ">";
/** Accepted in patterns as an alias of `>`. */
export const WILDCARD_REST_ALIAS = "#";

const SEGMENT = /^[A-Za-z0-9_\-:@~]+$/;
const EXAMPLE = "for example sensors.kitchen.temp";

function topicError(message: string) {
  return fail("invalid_topic", message);
}

/** Why `segment` is not a valid literal segment (null when it is). */
function segmentProblem(segment: string, text: string, pattern: boolean): string | null {
  if (segment === "") return `"${text}" has an empty segment: topics are words separated by single dots, ${EXAMPLE}`;
  if (SEGMENT.test(segment)) return null;
  if (segment.includes("/")) return `"${text}" uses "/": topics are dot-separated, ${EXAMPLE}`;
  if (segment.includes("+")) return `"${text}" uses "+": the one-segment wildcard is * (sensors.*.temp)`;
  if (segment.includes("*") || segment.includes(">") || segment.includes("#")) {
    return pattern ? `wildcards must be whole segments ("${segment}" in "${text}"): sensors.*.temp, sensors.>` : `"${text}" has a wildcard: publish to a concrete topic (wildcards * > # are for subscriptions)`;
  }
  const bad = [...segment].find((c) => !SEGMENT.test(c));
  return `"${text}" has a character that topics do not allow (${JSON.stringify(bad)}): segments use letters, digits and _ - : @ ~`;
}

function split(text: string): ReturnType<typeof topicError> | string[] {
  if (typeof text !== "string" || text === "") return topicError(`a topic cannot be empty (${EXAMPLE})`);
  if (text.length > MAX_TOPIC_LENGTH) return topicError(`a topic is at most ${MAX_TOPIC_LENGTH} characters; this one has ${text.length}`);
  const segments = text.split(".");
  if (segments.length > MAX_TOPIC_SEGMENTS) return topicError(`a topic has at most ${MAX_TOPIC_SEGMENTS} segments; "${text.slice(0, 40)}..." has ${segments.length}`);
  return segments;
}

/** The segments of a concrete (publishable) topic. Error code: `invalid_topic`. */
export function parseTopic(text: string): Result<string[]> {
  const segments = split(text);
  if (!Array.isArray(segments)) return segments;
  for (const s of segments) {
    const problem = segmentProblem(s, text, false);
    if (problem) return topicError(problem);
  }
  return ok(segments);
}

/** The segments of a subscription pattern, `#` normalised to `>`. Error code: `invalid_topic`. */
export function parsePattern(text: string): Result<string[]> {
  const segments = split(text);
  if (!Array.isArray(segments)) return segments;
  for (let i = 0; i < segments.length; i++) {
    let s = segments[i]!;
    if (s === WILDCARD_REST_ALIAS) s = segments[i] = WILDCARD_REST;
    if (s === WILDCARD_REST) {
      if (i !== segments.length - 1) return topicError(`"${text}": ">" (or "#") matches the rest of a topic, so it must be the last segment`);
      continue;
    }
    if (s === WILDCARD_ONE) continue;
    const problem = segmentProblem(s, text, true);
    if (problem) return topicError(problem);
  }
  return ok(segments);
}

/** True if the text is a pattern with at least one wildcard segment (it may still be invalid). */
export function hasWildcard(text: string): boolean {
  return text.split(".").some((s) => s === WILDCARD_ONE || s === WILDCARD_REST || s === WILDCARD_REST_ALIAS);
}

/** The canonical text of a parsed pattern (`#` already written as `>`). */
export function formatPattern(segments: readonly string[]): string {
  return segments.join(".");
}

/** Does the pattern (parsed) match the topic (parsed)? The reference for TopicTree. */
export function topicMatches(pattern: readonly string[], topic: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === WILDCARD_REST) return topic.length > i;
    if (i >= topic.length) return false;
    if (p !== WILDCARD_ONE && p !== topic[i]) return false;
  }
  return pattern.length === topic.length;
}

interface TreeNode<T> {
  /** Children by literal segment. */
  literal: Map<string, TreeNode<T>> | null;
  /** The child for `*`. */
  one: TreeNode<T> | null;
  /** Values whose pattern ends with `>` right here (they match any non-empty rest). */
  rest: Set<T> | null;
  /** Values whose pattern ends exactly here. */
  exact: Set<T> | null;
}

function node<T>(): TreeNode<T> {
  return { literal: null, one: null, rest: null, exact: null };
}

function isEmpty<T>(n: TreeNode<T>): boolean {
  return !n.one && !n.rest?.size && !n.exact?.size && !n.literal?.size;
}

/**
 * An index of subscription patterns: one walk of the topic's segments finds
 * every value whose pattern matches, whatever the number of patterns. A value
 * may be added under several patterns; `match` returns each value once.
 */
export class TopicTree<T> {
  private readonly root: TreeNode<T> = node();
  private count = 0;

  /** Number of (pattern, value) entries. */
  get size(): number {
    return this.count;
  }

  /** Adds `value` under the parsed pattern; false if it was there already. */
  add(pattern: readonly string[], value: T): boolean {
    let n = this.root;
    for (let i = 0; i < pattern.length; i++) {
      const s = pattern[i]!;
      if (s === WILDCARD_REST) {
        n.rest ??= new Set();
        if (n.rest.has(value)) return false;
        n.rest.add(value);
        this.count++;
        return true;
      }
      if (s === WILDCARD_ONE) n = n.one ??= node();
      else {
        n.literal ??= new Map();
        let next = n.literal.get(s);
        if (!next) n.literal.set(s, (next = node()));
        n = next;
      }
    }
    n.exact ??= new Set();
    if (n.exact.has(value)) return false;
    n.exact.add(value);
    this.count++;
    return true;
  }

  /** Removes `value` from under the parsed pattern (pruning empty branches); false if it was not there. */
  remove(pattern: readonly string[], value: T): boolean {
    const removed = this.removeAt(this.root, pattern, 0, value);
    if (removed) this.count--;
    return removed;
  }

  private removeAt(n: TreeNode<T>, pattern: readonly string[], i: number, value: T): boolean {
    if (i === pattern.length) return n.exact?.delete(value) ?? false;
    const s = pattern[i]!;
    if (s === WILDCARD_REST) return n.rest?.delete(value) ?? false;
    const child = s === WILDCARD_ONE ? n.one : (n.literal?.get(s) ?? null);
    if (!child || !this.removeAt(child, pattern, i + 1, value)) return false;
    if (isEmpty(child)) {
      if (s === WILDCARD_ONE) n.one = null;
      else n.literal!.delete(s);
    }
    return true;
  }

  /** Every value whose pattern matches the parsed topic, added to `out` (each once). */
  match(topic: readonly string[], out: Set<T> = new Set()): Set<T> {
    if (topic.length > 0) this.matchAt(this.root, topic, 0, out);
    return out;
  }

  private matchAt(n: TreeNode<T>, topic: readonly string[], i: number, out: Set<T>): void {
    if (i === topic.length) {
      if (n.exact) for (const v of n.exact) out.add(v);
      return;
    }
    if (n.rest) for (const v of n.rest) out.add(v);
    const child = n.literal?.get(topic[i]!);
    if (child) this.matchAt(child, topic, i + 1, out);
    if (n.one) this.matchAt(n.one, topic, i + 1, out);
  }
}
