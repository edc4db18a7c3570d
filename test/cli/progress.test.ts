/**
 * Live progress of long commands (send-file, bench): on a terminal (a pty from
 * util-linux `script`) a line rewritten in place with bytes and a rate; not a
 * terminal, or --json: no progress at all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { pilotCommand, runCommand, startCluster, type Cluster } from "../support/cluster.ts";
import { formatProgress, progressWanted, startProgress } from "../../src/cli/progress.ts";

/** A progress frame: carriage return, the line, erase-to-end-of-line. */
const FRAME = /\r([^\r\n]*?)\x1b\[K/g;

let cluster: Cluster;
let file = "";

beforeAll(async () => {
  cluster = await startCluster({ daemons: [{ name: "a", hostname: "progress-a" }, { name: "b", hostname: "progress-b" }] });
  await cluster.trust("a", "b");
  // Large enough that the transfer outlasts a few progress frames (the rate shows from 250 ms on):
  // with path MTU discovery two daemons on 127.0.0.1 move 48 MB in a quarter of a second.
  file = join(cluster.dir, "big.bin");
  const block = new Uint8Array(1_000_000).map((_, i) => i % 253);
  const fd = openSync(file, "w");
  for (let i = 0; i < 200; i++) writeSync(fd, block);
  closeSync(fd);
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

/** Runs `pilot args` as daemon a's user on a pseudo-terminal; its terminal output (stdout and stderr together). */
async function onTerminal(args: string[]): Promise<{ code: number; output: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const line = [...pilotCommand(), ...args].map(quote).join(" ");
  const r = await runCommand(["script", "-qec", line, "/dev/null"], { env: { ...process.env, ...cluster.daemon("a").env, TERM: "xterm" }, timeoutMs: 120_000 });
  return { code: r.code, output: r.stdout };
}

function frames(output: string): string[] {
  return [...output.matchAll(FRAME)].map((m) => m[1]!).filter((f) => f.trim() !== "");
}

/** util-linux `script` gives a command a pseudo-terminal (Debian: bsdutils, always installed). */
const hasPty = process.platform === "linux" && Bun.which("script") !== null;

describe.skipIf(!hasPty)("on a terminal", () => {
  test("send-file shows bytes, percentage and a rate while it runs, then erases the line", async () => {
    const r = await onTerminal(["send-file", "progress-b", file, "--name", "tty.bin"]);
    expect(r.code).toBe(0);
    const shown = frames(r.output);
    expect(shown.length).toBeGreaterThan(0);
    expect(shown.some((f) => /^sending\s+\d+%\s+[\d.]+ [kMG]?B of 200\.0 MB\s+[\d.]+ [kMG]?B\/s/.test(f))).toBe(true);
    expect(r.output).toContain('as "tty.bin"');
  }, 120_000);

  test("bench shows echoed bytes and a rate", async () => {
    const r = await onTerminal(["bench", "progress-b", "160", "--no-baseline"]);
    expect(r.code).toBe(0);
    const shown = frames(r.output);
    expect(shown.some((f) => /^echoed\s+\d+%\s+[\d.]+ [kMG]?B of 160\.0 MB\s+[\d.]+ [kMG]?B\/s/.test(f))).toBe(true);
    expect(r.output).toContain("every byte verified");
  }, 120_000);

  test("send-message --wait shows what it waits for and for how long", async () => {
    const r = await onTerminal(["send-message", "progress-b", "--data", "anyone there?", "--wait", "2500ms"]);
    expect(r.code).toBe(1); // nobody answers: timeout
    expect(frames(r.output).some((f) => /^waiting for progress-b's reply\s+\d+s$/.test(f))).toBe(true);
  }, 60_000);

  test("--json prints no progress even on a terminal", async () => {
    const r = await onTerminal(["send-file", "progress-b", file, "--name", "json.bin", "--json"]);
    expect(r.code).toBe(0);
    expect(frames(r.output)).toEqual([]);
    expect(r.output).not.toContain("\x1b[K");
    expect(JSON.parse(r.output.trim()).data.name).toBe("json.bin");
    const b = await onTerminal(["bench", "progress-b", "16", "--no-baseline", "--json"]);
    expect(b.code).toBe(0);
    expect(b.output).not.toContain("\x1b[K");
  }, 120_000);
});

describe("not on a terminal", () => {
  test("send-file and bench print no progress to a pipe", async () => {
    const s = await cluster.pilot("a", ["send-file", "progress-b", file, "--name", "pipe.bin"], { json: false, timeoutMs: 120_000 });
    expect(s.code).toBe(0);
    expect(s.stderr).not.toContain("\r");
    expect(s.stderr).not.toContain("\x1b[K");
    expect(s.stdout).toContain('as "pipe.bin"');
    const b = await cluster.pilot("a", ["bench", "progress-b", "16", "--no-baseline"], { json: false, timeoutMs: 120_000 });
    expect(b.code).toBe(0);
    expect(b.stderr).not.toContain("\r");
    expect(b.stderr).not.toContain("\x1b[K");
  }, 120_000);
});

describe("the renderer", () => {
  test("wants a terminal, not --json, not TERM=dumb", () => {
    expect(progressWanted(false, { isTTY: true }, { TERM: "xterm" })).toBe(true);
    expect(progressWanted(true, { isTTY: true }, { TERM: "xterm" })).toBe(false);
    expect(progressWanted(false, { isTTY: false }, { TERM: "xterm" })).toBe(false);
    expect(progressWanted(false, {}, {})).toBe(false);
    expect(progressWanted(false, { isTTY: true }, { TERM: "dumb" })).toBe(false);
  });

  test("formats bytes, percentage, rate and ETA", () => {
    expect(formatProgress({ label: "sending", done: 5_000_000, total: 20_000_000, rate: 2_500_000, elapsedMs: 2000 })).toBe("sending   25%  5.0 MB of 20.0 MB  2.5 MB/s  ETA 6s");
    expect(formatProgress({ done: 1500, rate: null, elapsedMs: 3500 })).toBe("1.5 kB  3s");
    expect(formatProgress({ label: "waiting", done: 0, rate: null, elapsedMs: 12_000, bytes: false })).toBe("waiting  12s");
  });

  test("draws on a timer after its delay and erases its line at the end", async () => {
    let text = "";
    const p = startProgress({ enabled: true, label: "x", total: 100, delayMs: 10, intervalMs: 10, write: (t) => (text += t) });
    p.update(50);
    await Bun.sleep(60);
    p.finish();
    expect(text).toContain("\rx   50%  50 B of 100 B");
    expect(text.endsWith("\r\x1b[K")).toBe(true);
    let early = "";
    const e = startProgress({ enabled: true, label: "sending", delayMs: 5, intervalMs: 1000, write: (t) => (early += t) });
    await Bun.sleep(40);
    e.finish();
    expect(early.startsWith("\rsending  0s\x1b[K")).toBe(true); // nothing counted yet: no "0 B/s"
    let quiet = "";
    const q = startProgress({ enabled: false, write: (t) => (quiet += t), delayMs: 1 });
    q.update(1, 2);
    await Bun.sleep(20);
    q.finish();
    expect(quiet).toBe("");
  });
});
