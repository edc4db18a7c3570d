/**
 * `pilot logs` against real files and real daemons: the last N lines (into
 * the rotated files), level filters, --json envelopes, -f through the
 * daemon's own rotation; the daemon rotating its log at the configured size
 * while it runs; and start-up errors still reaching the log and `daemon
 * start` when the log is full (it is truncated by the rotation the first
 * start-up line causes), and with `--foreground --log-to file`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ROOT, pilotCommand, readLog, runPilot, startCluster, type Cluster } from "../support/cluster.ts";
import { RotatingLogFile } from "../../src/util/rotating-log.ts";

const dir = mkdtempSync("/tmp/pilot-ops-logs-");
const live = new Set<Bun.Subprocess>();
let c: Cluster;

beforeAll(async () => {
  c = await startCluster();
});
afterAll(async () => {
  for (const p of live) p.kill("SIGKILL");
  await c?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function home(name: string, files: Record<string, string> = {}): Record<string, string> {
  const h = join(dir, name);
  mkdirSync(h, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(h, f), text);
  return { PILOT_HOME: h };
}

const T = (i: number) => `2026-01-01T00:00:${String(i).padStart(2, "0")}.000Z`;
const SAMPLE = [
  `${T(1)} INFO  daemon: daemon ready address=0:0000.0000.0004`,
  `${T(2)} DEBUG daemon/data: probe sent peer=0:0000.0000.0005`,
  `${T(3)} WARN  daemon: registry heartbeat failed error="timeout"`,
  `{"time":"${T(4)}","level":"error","component":"daemon/ipc","msg":"client dropped","reason":"bad frame"}`,
  `{"status":"ok","data":{"pid":42}}`,
  `TypeError: undefined is not an object`,
  `${T(5)} INFO  daemon: daemon stopping reason=SIGTERM`,
].join("\n");
const S = SAMPLE.split("\n");

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function waitFor<T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

describe("reading the log", () => {
  test("no log yet: not_found, with the way to get one", async () => {
    const env = home("none");
    const r = await runPilot(["logs", "--json"], { env });
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("not_found");
    expect(r.json.message).toBe(`no daemon log at ${join(env.PILOT_HOME!, "pilot.log")}`);
    expect(r.json.hint).toContain("pilot daemon start");
  });

  test("the last N lines, as written (default 50)", async () => {
    const env = home("sample", { "pilot.log": SAMPLE + "\n" });
    let r = await runPilot(["logs", "-n", "2"], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(S.slice(-2).join("\n") + "\n");
    r = await runPilot(["logs"], { env });
    expect(r.stdout).toBe(SAMPLE + "\n");
    r = await runPilot(["logs", "--lines", "0"], { env });
    expect(r.stdout).toBe("");
  });

  test("--level warn: warnings, errors, and lines that look like a failure", async () => {
    const env = home("levels", { "pilot.log": SAMPLE + "\n" });
    const r = await runPilot(["logs", "--level", "warn"], { env });
    expect(r.stdout.trim().split("\n")).toEqual([S[2]!, S[3]!, "TypeError: undefined is not an object"]);
    const e = await runPilot(["logs", "--level", "error", "-n", "1"], { env });
    expect(e.stdout).toBe("TypeError: undefined is not an object\n");
  });

  test("--json: one envelope per line; json records parsed whole, text records split, anything else as {line}", async () => {
    const env = home("json", { "pilot.log": SAMPLE + "\n" });
    const r = await runPilot(["logs", "--json", "-n", "5"], { env });
    expect(r.code).toBe(0);
    const envelopes = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(envelopes.map((e) => e.status)).toEqual(["ok", "ok", "ok", "ok", "ok"]);
    expect(envelopes.map((e) => e.data)).toEqual([
      { time: T(3), level: "warn", component: "daemon", msg: "registry heartbeat failed", line: S[2] },
      { time: T(4), level: "error", component: "daemon/ipc", msg: "client dropped", reason: "bad frame" },
      { line: '{"status":"ok","data":{"pid":42}}' },
      { line: "TypeError: undefined is not an object" },
      { time: T(5), level: "info", component: "daemon", msg: "daemon stopping", line: S[6] },
    ]);
  });

  test("older lines come from pilot.log.1, .2, ... when the current file has too few", async () => {
    const env = home("rotated", { "pilot.log.2": "oldest\n", "pilot.log.1": "older\n", "pilot.log": "newest\n" });
    const r = await runPilot(["logs", "-n", "3"], { env });
    expect(r.stdout).toBe("oldest\nolder\nnewest\n");
  });

  test("a log this user cannot read: unauthorized, not an empty answer", async () => {
    if (process.getuid?.() !== 0) return; // needs a second user: root drops to nobody below
    const env = home("private", { "pilot.log": SAMPLE + "\n" });
    const { chmodSync } = await import("node:fs");
    chmodSync(join(env.PILOT_HOME!, "pilot.log"), 0o600);
    chmodSync(dir, 0o755);
    chmodSync(env.PILOT_HOME!, 0o755);
    const [cmd, ...base] = pilotCommand();
    const p = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", `PILOT_HOME=${env.PILOT_HOME}`, "HOME=/tmp", cmd!, ...base, "logs", "--json"], { cwd: "/", stderr: "pipe", stdout: "pipe" });
    expect(p.exitCode).toBe(1);
    const e = JSON.parse(p.stderr.toString().trim().split("\n").pop()!);
    expect(e.code).toBe("unauthorized");
    expect(e.message).toContain("permission denied");
  });

  const bad: [string[], string, RegExp][] = [
    [["logs", "-n", "abc"], "invalid_argument", /--lines must be a whole number/],
    [["logs", "--lines", "2000000"], "invalid_argument", /--lines/],
    [["logs", "--level", "loud"], "invalid_argument", /--level must be debug, info, warn or error/],
    [["logs", "--bogus"], "usage", /bogus/],
  ];
  for (const [args, code, message] of bad) {
    test(`pilot ${args.join(" ")}: exit 2 (${code})`, async () => {
      const r = await runPilot([...args, "--json"], { env: home("bad", { "pilot.log": SAMPLE }) });
      expect(r.code).toBe(2);
      expect(r.json.code).toBe(code);
      expect(r.json.message).toMatch(message);
    });
  }

  test("-f follows through rotation, loses no line, stops cleanly on SIGTERM", async () => {
    const env = home("follow", { "pilot.log": SAMPLE + "\n" });
    const path = join(env.PILOT_HOME!, "pilot.log");
    const [cmd, ...base] = pilotCommand();
    const proc = Bun.spawn([cmd!, ...base, "logs", "-f", "-n", "1", "--level", "info"], { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
    live.add(proc);
    let text = "";
    const reader = proc.stdout.getReader();
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        text += new TextDecoder().decode(value);
      }
    })();
    await waitFor("the last line", () => text.includes("daemon stopping"));
    const log = RotatingLogFile.open(path, { maxBytes: 2048, keep: 3 });
    const want: string[] = [];
    for (let i = 0; i < 200; i++) {
      const line = `${new Date().toISOString()} INFO  daemon: line ${i} ${"f".repeat(i % 30)}`;
      log.write(line);
      want.push(line);
      if (i % 10 === 0) log.write(`${new Date().toISOString()} DEBUG daemon: hidden by --level ${i}`);
      // Bursts of up to two rotations between two looks of the follower, and quiet spells.
      if (i % 50 === 0) await Bun.sleep(300);
    }
    log.close();
    expect(log.rotations).toBeGreaterThan(4);
    await waitFor("every line", () => text.includes("line 199 "));
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    expect(text.trim().split("\n")).toEqual([S[6]!, ...want]);
  });
});

describe("the daemon's own log file", () => {
  test("rotates at log_max_size while it runs, keeps log_keep old files, and pilot logs reads across them", async () => {
    const a = join(c.dir, "rot-a");
    mkdirSync(a, { recursive: true });
    writeFileSync(join(a, "config.json"), JSON.stringify({ log_max_size: "16KiB", log_keep: "2" }));
    // A log already near its limit: the first lines of this start rotate it.
    const junk = Array.from({ length: 255 }, (_, i) => `junk ${String(i).padStart(3, "0")} ${"j".repeat(54)}`).join("\n") + "\n"; // 16320 bytes
    writeFileSync(join(a, "pilot.log"), junk);
    const da = await c.startDaemon({ name: "rot-a", hostname: "rot-a" });
    const log = join(a, "pilot.log");
    expect(readFileSync(`${log}.1`, "utf8")).toStartWith("junk 000 ");
    expect(readLog(da)).toContain("daemon ready");
    expect(statSync(log).size).toBeLessThan(16 * 1024);

    // While it runs: the file grows past the limit (a stray writer counts too), then the daemon logs.
    appendFileSync(log, junk.replace(/junk/g, "stray"));
    const b = await c.startDaemon({ name: "rot-b" });
    expect((await c.pilot("rot-b", ["handshake", String(da.nodeId), "rotate please"])).code).toBe(0);
    await waitFor("the daemon to log the request after a rotation", () => readLog(da).includes("trust request received") && readFileSync(`${log}.1`, "utf8").includes("stray 254"));
    expect(readFileSync(`${log}.2`, "utf8")).toStartWith("junk 000 ");
    expect(existsSync(`${log}.3`)).toBe(false);
    for (const f of [log, `${log}.1`, `${log}.2`]) expect(statSync(f).size).toBeLessThanOrEqual(16 * 1024 + 1024);

    const r = await c.pilot("rot-a", ["logs", "-n", "1000"], { json: false });
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toStartWith("junk ");
    expect(lines.indexOf("junk 254 " + "j".repeat(54))).toBeLessThan(lines.indexOf("stray 000 " + "j".repeat(54)));
    expect(lines.at(-1)).toContain("trust request received");
    const warn = await c.pilot("rot-a", ["logs", "--level", "warn", "-n", "1000"], { json: false });
    expect(warn.stdout).not.toContain("daemon ready");
    void b;
  }, 60_000);

  test("a start that fails with the log at its limit still reports the daemon's own error", async () => {
    const h = home("full-fail", { "config.json": JSON.stringify({ log_max_size: "16KiB" }), "pilot.log": "x".repeat(101).concat("\n").repeat(160) }); // 16320 bytes
    const port = await closedPort();
    const r = await runPilot(["daemon", "start", "--json", "--registry", `127.0.0.1:${port}`], { env: h });
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("registry_unavailable");
    expect(r.json.message).toContain(`127.0.0.1:${port}`);
    // The rotation the first start-up line caused moved the old contents away.
    expect(readFileSync(join(h.PILOT_HOME!, "pilot.log.1"), "utf8")).toStartWith("xxxx");
    const logs = await runPilot(["logs", "--level", "error", "--json", "-n", "1"], { env: h });
    expect(JSON.parse(logs.stdout.trim()).data.line).toContain('"code":"registry_unavailable"');
  });

  test("--foreground --log-to file (a service): a start-up failure is in the log as an ERROR record, and on stderr", async () => {
    const h = home("fg-fail");
    const port = await closedPort();
    const r = await runPilot(["daemon", "start", "--foreground", "--log-to", "file", "--json", "--registry", `127.0.0.1:${port}`], { env: h });
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("registry_unavailable");
    const logs = await runPilot(["logs", "--level", "error", "--json"], { env: h });
    const records = logs.stdout.trim().split("\n").map((l) => JSON.parse(l).data);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: "error", component: "daemon", msg: "start-up failed" });
    expect(records[0].line).toContain("code=registry_unavailable");
    // A bad value in config.json, before any logger exists, gets there too.
    writeFileSync(join(h.PILOT_HOME!, "config.json"), JSON.stringify({ log_keep: "many" }));
    const bad = await runPilot(["daemon", "start", "--foreground", "--log-to", "file", "--log-format", "json", "--registry", `127.0.0.1:${port}`], { env: h });
    expect(bad.code).toBe(2);
    const last = JSON.parse(readFileSync(join(h.PILOT_HOME!, "pilot.log"), "utf8").trim().split("\n").at(-1)!);
    expect(last).toMatchObject({ level: "error", msg: "start-up failed", code: "invalid_argument" });
    expect(last.error).toContain("log_keep");
  });

  test("config refuses bad rotation settings", async () => {
    const h = home("config");
    for (const [item, message] of [
      ["log_max_size=1KiB", /log_max_size must be a size from 16KiB/],
      ["log_max_size=big", /log_max_size/],
      ["log_keep=21", /log_keep must be a whole number from 0 to 20/],
    ] as const) {
      const r = await runPilot(["config", "--json", "--set", item], { env: h });
      expect(r.code).toBe(2);
      expect(r.json.code).toBe("invalid_argument");
      expect(r.json.message).toMatch(message);
    }
    const ok = await runPilot(["config", "--json", "--set", "log_max_size=64MiB", "--set", "log_keep=5"], { env: h });
    expect(ok.code).toBe(0);
  });
});
