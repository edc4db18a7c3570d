/**
 * Mutation fuzz of the topic rules (src/protocol/topic.ts): parseTopic and
 * parsePattern over valid topics and patterns mutated character by character
 * (dots, wildcards, MQTT and path characters, unicode, control characters,
 * lone surrogates, lengths around the limits), plus random strings. They never
 * throw, refuse with `invalid_topic` and a message, and agree with an
 * independent reference of the rules written here; what they accept
 * round-trips (formatPattern) and a topic matches itself as a pattern.
 */
import { expect, test } from "bun:test";
import { formatPattern, MAX_TOPIC_LENGTH, MAX_TOPIC_SEGMENTS, parsePattern, parseTopic, topicMatches } from "../../src/protocol/topic.ts";
import { seededRandom } from "../support/fuzz.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);

/** The rules as SERVICES.md states them, independently of topic.ts. */
function reference(text: string, pattern: boolean): string[] | null {
  if (text.length === 0 || text.length > MAX_TOPIC_LENGTH) return null;
  const segments = text.split(".");
  if (segments.length > MAX_TOPIC_SEGMENTS) return null;
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (pattern && (s === ">" || s === "#")) {
      if (i !== segments.length - 1) return null;
      out.push(">");
      continue;
    }
    if (pattern && s === "*") {
      out.push(s);
      continue;
    }
    if (s.length === 0) return null;
    for (const ch of s) {
      const c = ch.charCodeAt(0);
      const ok = ch.length === 1 && ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || "_-:@~".includes(ch));
      if (!ok) return null;
    }
    out.push(s);
  }
  return out;
}

const SEEDS = [
  "a",
  "sensors.kitchen.temp",
  "sensors.*.temp",
  "sensors.>",
  "sensors.#",
  "*",
  ">",
  "#",
  "*.*.*",
  "A.b_c-d:e@f~g",
  "agent-b.jobs.done",
  "0.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30.31",
  `${"x".repeat(120)}.${"y".repeat(135)}`,
];
const ALPHABET = [..."abcXYZ019_-:@~", ".", ".", ".", "*", ">", "#", "+", "/", " ", "\u0000", "\u001f", "\u007f", "é", "ü", "\u200b", "\u202e", "\ud800", "\udc00", "😀", "\\", "$", "%"];

function mutateText(rand: () => number, text: string): string {
  const pick = (n: number) => Math.floor(rand() * n);
  const ch = () => ALPHABET[pick(ALPHABET.length)]!;
  let out = text;
  const edits = 1 + pick(4);
  for (let e = 0; e < edits; e++) {
    const at = pick(out.length + 1);
    const r = rand();
    if (r < 0.3) out = out.slice(0, at) + ch() + out.slice(at);
    else if (r < 0.5) out = out.slice(0, at) + out.slice(at + 1 + pick(3));
    else if (r < 0.75) out = out.slice(0, at) + ch() + out.slice(at + 1);
    else if (r < 0.85) out = out + "." + out.slice(0, pick(out.length + 1));
    else if (r < 0.92) out = out.slice(0, at) + ".".repeat(1 + pick(2)) + out.slice(at);
    else out = out.slice(0, pick(out.length + 1));
  }
  // Lengths around the limit.
  if (rand() < 0.05) out = out.padEnd(MAX_TOPIC_LENGTH - 1 + pick(3), "z");
  return out;
}

function randomText(rand: () => number): string {
  let s = "";
  const n = Math.floor(rand() * 40);
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(rand() * ALPHABET.length)]!;
  return s;
}

function inputs(seed: number, check: (text: string) => void): void {
  const rand = seededRandom(seed);
  for (let i = 0; i < CASES; i++) {
    const text = rand() < 0.8 ? mutateText(rand, SEEDS[Math.floor(rand() * SEEDS.length)]!) : randomText(rand);
    try {
      check(text);
    } catch (e) {
      throw new Error(`case ${i} (seed ${seed}) failed on ${JSON.stringify(text)}: ${e}`);
    }
  }
}

test(`parseTopic: ${CASES} mutated and random topics, never a throw, the same verdict as the reference; a topic matches itself`, () => {
  let accepted = 0;
  inputs(31, (text) => {
    const r = parseTopic(text);
    const want = reference(text, false);
    if (r.ok) {
      accepted++;
      expect(r.value).toEqual(want!);
      expect(r.value.join(".")).toBe(text);
      const asPattern = parsePattern(text);
      expect(asPattern.ok && asPattern.value).toEqual(r.value);
      expect(topicMatches(r.value, r.value)).toBe(true);
    } else {
      expect(want).toBeNull();
      expect(r.error.code).toBe("invalid_topic");
      expect(r.error.message.length).toBeGreaterThan(0);
    }
  });
  expect(accepted).toBeGreaterThan(CASES / 20);
});

test(`parsePattern: ${CASES} mutated and random patterns, never a throw, the same verdict as the reference; what it accepts round-trips`, () => {
  let accepted = 0;
  let wild = 0;
  inputs(32, (text) => {
    const r = parsePattern(text);
    const want = reference(text, true);
    if (r.ok) {
      accepted++;
      expect(r.value).toEqual(want!);
      const canonical = formatPattern(r.value);
      expect(parsePattern(canonical)).toEqual(r);
      const hasWild = r.value.some((s) => s === "*" || s === ">");
      if (hasWild) wild++;
      // A pattern without wildcards is a topic, and the other way round.
      expect(parseTopic(canonical).ok).toBe(!hasWild);
      // Where `>` may stand: last only.
      expect(r.value.slice(0, -1)).not.toContain(">");
    } else {
      expect(want).toBeNull();
      expect(r.error.code).toBe("invalid_topic");
      expect(r.error.message.length).toBeGreaterThan(0);
    }
  });
  expect(accepted).toBeGreaterThan(CASES / 20);
  expect(wild).toBeGreaterThan(CASES / 100);
});
