/**
 * Topics and patterns (src/protocol/topic.ts): the rules, the matcher, and
 * property tests of the TopicTree index against the plain matcher.
 */
import { describe, expect, test } from "bun:test";
import { formatPattern, hasWildcard, MAX_TOPIC_LENGTH, MAX_TOPIC_SEGMENTS, parsePattern, parseTopic, topicMatches, TopicTree } from "../../src/protocol/topic.ts";
import { Prng } from "../support/prng.ts";

function seg(text: string): string[] {
  const r = parseTopic(text);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

function pat(text: string): string[] {
  const r = parsePattern(text);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

describe("topics", () => {
  test("dot-separated words of letters, digits and _ - : @ ~ are topics", () => {
    for (const t of ["a", "sensors.kitchen.temp", "A.b_c-d:e@f~g", "0.1.2", "agent-b.jobs.done"]) expect(parseTopic(t)).toEqual({ ok: true, value: t.split(".") });
  });

  test("refused with a clear reason: empty, empty segments, wildcards, other characters, too long, too many segments", () => {
    const cases: [string, RegExp][] = [
      ["", /cannot be empty/],
      ["a..b", /empty segment/],
      [".a", /empty segment/],
      ["a.", /empty segment/],
      ["a.*", /wildcard: publish to a concrete topic/],
      ["a.>", /wildcard/],
      ["a.#", /wildcard/],
      ["a/b", /dot-separated/],
      ["a.+.c", /one-segment wildcard is \*/],
      ["a b", /character that topics do not allow/],
      ["été", /character/],
      ["a\u0000b", /character/],
      ["x".repeat(MAX_TOPIC_LENGTH + 1), /at most 256 characters/],
      [Array(MAX_TOPIC_SEGMENTS + 1).fill("a").join("."), /at most 32 segments/],
    ];
    for (const [text, why] of cases) {
      const r = parseTopic(text);
      expect({ text, ok: r.ok }).toEqual({ text, ok: false });
      if (!r.ok) {
        expect(r.error.code).toBe("invalid_topic");
        expect(r.error.message).toMatch(why);
      }
    }
    expect(parseTopic("x".repeat(MAX_TOPIC_LENGTH)).ok).toBe(true);
    expect(parseTopic(Array(MAX_TOPIC_SEGMENTS).fill("a").join(".")).ok).toBe(true);
  });
});

describe("patterns", () => {
  test("* is one segment, > (or #) the rest, only as whole segments and > last; # is kept as >", () => {
    expect(pat("sensors.*.temp")).toEqual(["sensors", "*", "temp"]);
    expect(pat("sensors.>")).toEqual(["sensors", ">"]);
    expect(pat("sensors.#")).toEqual(["sensors", ">"]);
    expect(formatPattern(pat("a.*.#"))).toBe("a.*.>");
    expect(pat(">")).toEqual([">"]);
    expect(pat("*")).toEqual(["*"]);
    for (const [text, why] of [
      ["a.>.b", /must be the last segment/],
      ["#.a", /must be the last segment/],
      ["a*", /whole segments/],
      ["a.b*c", /whole segments/],
      ["a.>>", /whole segments/],
      ["a..*", /empty segment/],
      ["a/#", /dot-separated/],
      ["a.+", /one-segment wildcard is \*/],
    ] as const) {
      const r = parsePattern(text);
      expect({ text, ok: r.ok }).toEqual({ text, ok: false });
      if (!r.ok) expect(r.error.message).toMatch(why);
    }
    expect(hasWildcard("a.*")).toBe(true);
    expect(hasWildcard("a.b")).toBe(false);
  });

  test("matching as NATS has it: * one segment, > one or more (not zero), literals exactly, case-sensitive", () => {
    const yes: [string, string][] = [
      ["a.b.c", "a.b.c"],
      ["a.*.c", "a.b.c"],
      ["*.*.*", "a.b.c"],
      ["a.>", "a.b"],
      ["a.>", "a.b.c.d"],
      ["a.#", "a.b.c"],
      [">", "a"],
      [">", "a.b.c"],
      ["*.>", "a.b"],
      ["a.*.>", "a.b.c"],
    ];
    const no: [string, string][] = [
      ["a.b.c", "a.b"],
      ["a.b", "a.b.c"],
      ["a.*.c", "a.b.d"],
      ["a.*", "a.b.c"],
      ["a.*", "a"],
      ["a.>", "a"],
      ["a.#", "a"],
      ["*.>", "a"],
      ["A.b", "a.b"],
      ["a.*.>", "a.b"],
    ];
    for (const [p, t] of yes) expect({ p, t, m: topicMatches(pat(p), seg(t)) }).toEqual({ p, t, m: true });
    for (const [p, t] of no) expect({ p, t, m: topicMatches(pat(p), seg(t)) }).toEqual({ p, t, m: false });
  });
});

describe("TopicTree", () => {
  test("finds every value whose pattern matches, each once, and forgets removed ones (pruning empty branches)", () => {
    const tree = new TopicTree<string>();
    expect(tree.add(pat("a.b"), "exact")).toBe(true);
    expect(tree.add(pat("a.b"), "exact")).toBe(false);
    tree.add(pat("a.*"), "star");
    tree.add(pat("a.>"), "rest");
    tree.add(pat(">"), "all");
    tree.add(pat("a.*"), "exact"); // the same value under two matching patterns
    expect([...tree.match(seg("a.b"))].sort()).toEqual(["all", "exact", "rest", "star"]);
    expect([...tree.match(seg("a.b.c"))].sort()).toEqual(["all", "rest"]);
    expect([...tree.match(seg("a"))].sort()).toEqual(["all"]);
    expect([...tree.match(seg("b"))].sort()).toEqual(["all"]);
    expect(tree.size).toBe(5);
    expect(tree.remove(pat("a.*"), "star")).toBe(true);
    expect(tree.remove(pat("a.*"), "star")).toBe(false);
    expect(tree.remove(pat("x.y"), "star")).toBe(false);
    expect([...tree.match(seg("a.c"))].sort()).toEqual(["all", "exact", "rest"]);
    for (const [p, v] of [["a.b", "exact"], ["a.*", "exact"], ["a.>", "rest"], [">", "all"]] as const) expect(tree.remove(pat(p), v)).toBe(true);
    expect(tree.size).toBe(0);
    expect([...tree.match(seg("a.b"))]).toEqual([]);
    // Everything pruned: the root has no children left.
    expect((tree as any).root).toEqual({ literal: new Map(), one: null, rest: new Set(), exact: null });
  });

  /** A random topic over a small alphabet (so that patterns often match). */
  function randomTopic(rng: Prng): string[] {
    const words = ["a", "b", "c", "dd", "e-1"];
    return Array.from({ length: rng.int(1, 5) }, () => words[rng.int(0, words.length - 1)]!);
  }

  function randomPattern(rng: Prng): string[] {
    const t = randomTopic(rng).map((s) => (rng.chance(0.3) ? "*" : s));
    if (rng.chance(0.3)) t[t.length - 1] = ">";
    return t;
  }

  test("property: over 3000 random add/remove/match steps, match equals a scan with topicMatches", () => {
    const rng = new Prng(20261203);
    const tree = new TopicTree<number>();
    const entries: { pattern: string[]; value: number }[] = [];
    for (let step = 0; step < 3000; step++) {
      const r = rng.next();
      if (r < 0.4 || entries.length === 0) {
        const pattern = randomPattern(rng);
        const value = rng.int(0, 40);
        const present = entries.some((e) => e.value === value && formatPattern(e.pattern) === formatPattern(pattern));
        expect(tree.add(pattern, value)).toBe(!present);
        if (!present) entries.push({ pattern, value });
      } else if (r < 0.6) {
        const i = rng.int(0, entries.length - 1);
        const [e] = entries.splice(i, 1);
        expect(tree.remove(e!.pattern, e!.value)).toBe(true);
      } else {
        const topic = randomTopic(rng);
        const want = new Set(entries.filter((e) => topicMatches(e.pattern, topic)).map((e) => e.value));
        expect([...tree.match(topic)].sort((a, b) => a - b)).toEqual([...want].sort((a, b) => a - b));
      }
      expect(tree.size).toBe(entries.length);
    }
  });

  test("property: a pattern matches a topic exactly when its text form would (regex reference), for 20000 random pairs", () => {
    const rng = new Prng(7);
    const toRegex = (p: string[]) => new RegExp("^" + p.map((s) => (s === "*" ? "[^.]+" : s === ">" ? "[^.]+(\\.[^.]+)*" : s.replace(/[-]/g, "\\-"))).join("\\.") + "$");
    for (let i = 0; i < 20_000; i++) {
      const p = randomPattern(rng);
      const t = randomTopic(rng);
      expect(topicMatches(p, t)).toBe(toRegex(p).test(t.join(".")));
    }
  });

  test("property: any text either parses as a topic that round-trips, or is refused with invalid_topic; topics are patterns that match themselves", () => {
    const rng = new Prng(99);
    const alphabet = "ab.*>#_-:@~/ +\u00e9\u0000";
    for (let i = 0; i < 20_000; i++) {
      const text = Array.from({ length: rng.int(0, 12) }, () => alphabet[rng.int(0, alphabet.length - 1)]).join("");
      const t = parseTopic(text);
      const p = parsePattern(text);
      if (t.ok) {
        expect(t.value.join(".")).toBe(text);
        expect(p.ok).toBe(true);
        if (p.ok) expect(topicMatches(p.value, t.value)).toBe(true);
      } else expect(t.error.code).toBe("invalid_topic");
      if (!p.ok) expect(p.error.code).toBe("invalid_topic");
    }
  });
});
