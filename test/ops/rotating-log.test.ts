/**
 * The daemon's log file: bounded size, a fixed number of old files, no line
 * lost or doubled across rotations, descriptors opened elsewhere on the file
 * (the detached daemon's stderr) still landing in the current file; reading
 * lines back in either format; following a file through both kinds of
 * rotation (ours: copy + truncate; logrotate's: rename) without losing lines.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { RotatingLogFile, rotatedPaths } from "../../src/util/rotating-log.ts";
import { createLogger, levelAtLeast, parseLogLine } from "../../src/util/log.ts";
import { followLog, lastLines } from "../../src/cli/commands/logs.ts";

const dir = mkdtempSync("/tmp/pilot-ops-log-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(dir, `case-${++n}`, "pilot.log");
const mk = (path: string) => (mkdirSync(join(path, ".."), { recursive: true }), path);
const lines = (path: string) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : []);

describe("RotatingLogFile", () => {
  test("never grows past maxBytes, keeps `keep` old files, loses and doubles no line", () => {
    const path = mk(fresh());
    const log = RotatingLogFile.open(path, { maxBytes: 4096, keep: 3 });
    const written: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const line = `line ${String(i).padStart(4, "0")} ${"x".repeat(i % 50)}`;
      log.write(line);
      written.push(line);
      expect(statSync(path).size).toBeLessThanOrEqual(4096);
    }
    log.close();
    expect(log.rotations).toBeGreaterThan(3);
    const files = [path, ...rotatedPaths(path, 3)];
    for (const f of files) expect(statSync(f).size).toBeLessThanOrEqual(4096);
    expect(existsSync(`${path}.4`)).toBe(false);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // Oldest to newest, the files hold the last lines written, contiguous and in order.
    const kept = [...files].reverse().flatMap(lines);
    expect(kept).toEqual(written.slice(written.length - kept.length));
    expect(kept.length).toBeGreaterThan(100);
  });

  test("keep 0: the file is emptied in place, no old files", () => {
    const path = mk(fresh());
    const log = RotatingLogFile.open(path, { maxBytes: 1024, keep: 0 });
    for (let i = 0; i < 100; i++) log.write(`line ${i} ${"y".repeat(40)}`);
    log.close();
    expect(statSync(path).size).toBeLessThanOrEqual(1024);
    expect(existsSync(`${path}.1`)).toBe(false);
  });

  test("the file keeps its inode: another descriptor (a daemon's stderr) writes into the current file, and its bytes count", () => {
    const path = mk(fresh());
    const stderrLike = openSync(path, "a");
    const ino = statSync(path).ino;
    const log = RotatingLogFile.open(path, { maxBytes: 2048, keep: 2 });
    for (let i = 0; i < 200; i++) {
      log.write(`logger ${i} ${"z".repeat(30)}`);
      if (i % 10 === 0) writeSync(stderrLike, `stray ${i}\n`);
    }
    expect(statSync(path).ino).toBe(ino);
    writeSync(stderrLike, "after rotation\n");
    expect(lines(path).at(-1)).toBe("after rotation");
    closeSync(stderrLike);
    log.close();
    const all = [`${path}.2`, `${path}.1`, path].flatMap(lines);
    expect(all.filter((l) => l.startsWith("stray")).length).toBeGreaterThan(0);
    for (const f of [path, `${path}.1`, `${path}.2`]) expect(statSync(f).size).toBeLessThanOrEqual(2048 + 64);
  });

  test("moved away or deleted by someone else: the path is written again", () => {
    const path = mk(fresh());
    const log = RotatingLogFile.open(path, { maxBytes: 1 << 20, keep: 3 }, { reopenCheckMs: 0 });
    log.write("one");
    renameSync(path, `${path}.moved`);
    log.write("two");
    rmSync(path);
    log.write("three");
    log.close();
    expect(lines(`${path}.moved`)).toEqual(["one"]);
    expect(lines(path)).toEqual(["three"]);
  });

  test("a logger with the file as its sink writes records that read back", () => {
    const path = mk(fresh());
    const file = RotatingLogFile.open(path);
    const log = createLogger("daemon", { sink: (l) => file.write(l) });
    log.info("daemon ready", { address: "0:0000.0000.0004" });
    log.child("data").warn("path changed", { reason: "direct path silent" });
    file.close();
    const [a, b] = lines(path).map(parseLogLine);
    expect(a).toMatchObject({ kind: "text", level: "info", component: "daemon", msg: "daemon ready" });
    expect(b).toMatchObject({ kind: "text", level: "warn", component: "daemon/data", msg: "path changed" });
  });
});

describe("parseLogLine", () => {
  test("text and json records, envelopes and a crash's output", () => {
    expect(parseLogLine("2026-01-01T00:00:00.000Z ERROR daemon: boom error=x")).toMatchObject({ kind: "text", level: "error", time: "2026-01-01T00:00:00.000Z", component: "daemon", msg: "boom" });
    const sink: string[] = [];
    createLogger("daemon", { format: "json", sink: (l) => sink.push(l) }).warn("registry heartbeat failed", { error: "timeout" });
    const j = parseLogLine(sink[0]!);
    expect(j).toMatchObject({ kind: "json", level: "warn", component: "daemon", msg: "registry heartbeat failed" });
    expect(j.record).toMatchObject({ error: "timeout" });
    expect(parseLogLine('{"status":"error","code":"registry_unavailable","message":"x"}')).toMatchObject({ kind: "other", level: "error" });
    expect(parseLogLine('{"status":"ok","data":{}}')).toMatchObject({ kind: "other", level: "info" });
    expect(parseLogLine("TypeError: undefined is not an object").level).toBe("error");
    expect(parseLogLine("      at run (/src/daemon/run.ts:10:5)").level).toBe("error");
    expect(parseLogLine("Daemon running in the foreground (pid 4)").level).toBe("info");
    expect(parseLogLine("{not json").kind).toBe("other");
    expect(levelAtLeast("error", "warn")).toBe(true);
    expect(levelAtLeast("info", "warn")).toBe(false);
  });
});

describe("lastLines", () => {
  test("reaches back into the rotated files, oldest first, after the filter", () => {
    const path = mk(fresh());
    writeFileSync(`${path}.2`, "a1\na2\n");
    writeFileSync(`${path}.1`, "b1\n2026-01-01T00:00:00.000Z WARN  daemon: w1\nb3\n");
    writeFileSync(path, "c1\nc2");
    expect(lastLines(path, 3).map((p) => p.line)).toEqual(["b3", "c1", "c2"]);
    expect(lastLines(path, 100).map((p) => p.line)).toEqual(["a1", "a2", "b1", "2026-01-01T00:00:00.000Z WARN  daemon: w1", "b3", "c1", "c2"]);
    expect(lastLines(path, 5, (p) => levelAtLeast(p.level, "warn")).map((p) => p.msg)).toEqual(["w1"]);
    expect(lastLines(path, 0)).toEqual([]);
  });

  test("a file larger than one read chunk, with multi-byte characters across chunk edges", () => {
    const path = mk(fresh());
    const want = Array.from({ length: 5000 }, (_, i) => `${i} ünïcödé ✓ ${"-".repeat(i % 37)}`);
    writeFileSync(path, want.join("\n") + "\n");
    expect(lastLines(path, 5000).map((p) => p.line)).toEqual(want);
  });
});

describe("followLog", () => {
  async function follow(path: string, act: (push: (s: string) => void) => Promise<void>): Promise<string[]> {
    const got: string[] = [];
    const stop = new AbortController();
    const done = followLog(path, (l) => got.push(l), stop.signal, { pollMs: 20 });
    await Bun.sleep(60);
    await act((s) => got.push(`(marker ${s})`));
    await Bun.sleep(150);
    stop.abort();
    await done;
    return got.filter((l) => !l.startsWith("(marker"));
  }

  test("through our rotation (copy to .1, truncate in place): every line once, in order", async () => {
    const path = mk(fresh());
    writeFileSync(path, "before follow\n");
    const log = RotatingLogFile.open(path, { maxBytes: 1024, keep: 3 });
    const want: string[] = [];
    const got = await follow(path, async () => {
      for (let i = 0; i < 120; i++) {
        const line = `line ${i} ${"r".repeat(20)}`;
        log.write(line);
        want.push(line);
        // Several rotations between two looks, and some looks between rotations.
        if (i % 7 === 0) await Bun.sleep(25);
      }
    });
    log.close();
    expect(log.rotations).toBeGreaterThan(2);
    expect(got).toEqual(want);
  });

  test("through a rename (logrotate's way): the rest of the old file, then the new one", async () => {
    const path = mk(fresh());
    writeFileSync(path, "");
    const got = await follow(path, async () => {
      appendFileSync(path, "one\ntwo\n");
      await Bun.sleep(50);
      appendFileSync(path, "three\n");
      renameSync(path, `${path}.1`);
      writeFileSync(path, "four\n");
      await Bun.sleep(50);
      appendFileSync(path, "five\n");
    });
    expect(got).toEqual(["one", "two", "three", "four", "five"]);
  });

  test("a file that does not exist yet is waited for", async () => {
    const path = mk(fresh());
    const got = await follow(path, async () => {
      await Bun.sleep(50);
      writeFileSync(path, "first\n");
    });
    expect(got).toEqual(["first"]);
  });
});
