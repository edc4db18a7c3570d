/**
 * Pilot inside the NAT lab: a rendezvous in `rdv`, daemons on the lab hosts
 * (each in its namespace, each with its own PILOT_HOME), and apps in the test
 * process talking to them over their IPC sockets (a unix socket crosses
 * network namespaces). Every process is started here and stopped by pid.
 *
 *   const pilot = await LabPilot.start(lab);          // the rendezvous
 *   const a = await pilot.daemon("h1");               // a public daemon on h1
 *   const { ttfbMs, mbps } = await transfer(a, b, 4 << 20);
 *   pilot.peer(a, b)                                  // `pilot --json peers` entry: path, endpoint, rtt
 *   await pilot.stop();
 *
 * LAB_LOG_LEVEL=debug makes the daemons log every session and path event
 * (their output is in the failure messages of waitPath).
 *
 * PILOT_TEST_STORE=postgres runs the rendezvous on PostgreSQL instead of
 * SQLite: each LabPilot starts a private cluster (../registry/store/
 * postgres-cluster.ts) and stops it in `stop()`. The rendezvous reaches it
 * through its unix socket (the filesystem is shared across namespaces; in
 * `rdv`, 127.0.0.1 is not this host's).
 */
import { afterAll, beforeAll, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { connect, type Driver, type PilotSocket } from "../../src/driver/index.ts";
import { startPostgres, type PostgresCluster } from "../registry/store/postgres-cluster.ts";
import { ADDRESSES, labUnavailable, NatLab, type Host, type NatType } from "./lab.ts";

const ROOT = resolve(import.meta.dir, "../..");
const MAIN = join(ROOT, "src/cli/main.ts");
export const REGISTRY = `${ADDRESSES.rdv}:9000`;
export const BEACON = `${ADDRESSES.rdv}:9001`;
/** The rendezvous's relay over WebSocket (plain ws in the lab; production runs wss on 443). */
export const RELAY_WS = `ws://${ADDRESSES.rdv}:443`;

export interface LabDaemon {
  readonly host: Host;
  readonly home: string;
  readonly pid: number;
  readonly address: string;
  readonly nodeId: number;
  readonly driver: Driver;
  /** The tunnel's local UDP port. */
  readonly port: number;
  readonly log: () => string;
}

interface Proc {
  child: ChildProcess;
  output: string;
}

/** Every process started here, killed by pid if the test process exits without stopping them. */
const running = new Set<number>();
process.on("exit", () => {
  for (const pid of running) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

function waitForJsonLine(p: Proc, what: string, timeoutMs = 20_000): Promise<any> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in time:\n${p.output}`)), timeoutMs);
    const check = () => {
      const line = p.output.split("\n").find((l) => l.startsWith("{") && l.includes('"status"'));
      if (!line) return false;
      clearTimeout(timer);
      const parsed = JSON.parse(line);
      if (parsed.status !== "ok") reject(new Error(`${what} failed: ${line}`));
      else resolvePromise(parsed.data);
      return true;
    };
    p.child.stdout!.on("data", (d) => {
      p.output += d;
      check();
    });
    p.child.stderr!.on("data", (d) => (p.output += d));
    p.child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${p.output}`));
    });
  });
}

export class LabPilot {
  readonly dir: string;
  private readonly procs: Proc[] = [];
  private readonly daemons = new Map<Host, LabDaemon & { proc: Proc }>();
  private rendezvous: Proc | undefined;
  private postgres: PostgresCluster | undefined;

  private constructor(
    readonly lab: NatLab,
    readonly env: Record<string, string>,
  ) {
    this.dir = mkdtempSync("/tmp/pilot-natlab-");
  }

  /** Starts the rendezvous (registry :9000, beacon :9001) in `rdv`. `env` goes to every daemon. */
  static async start(lab: NatLab, env: Record<string, string> = {}, rendezvousArgs: string[] = []): Promise<LabPilot> {
    const pilot = new LabPilot(lab, env);
    try {
      const home = join(pilot.dir, "rdv");
      mkdirSync(home, { recursive: true });
      const store: string[] = [];
      if (process.env.PILOT_TEST_STORE === "postgres") {
        pilot.postgres = await startPostgres();
        store.push("--store", pilot.postgres.socketUrl(await pilot.postgres.createDatabase()));
      }
      const p = pilot.spawn("rdv", ["rendezvous", "--json", "--registry-addr", REGISTRY, "--beacon-addr", BEACON, "--ws-addr", `${ADDRESSES.rdv}:443`, ...store, ...rendezvousArgs], { PILOT_HOME: home });
      pilot.rendezvous = p;
      const ready = await waitForJsonLine(p, "the rendezvous");
      if (pilot.postgres && !String(ready.store).startsWith("postgres")) throw new Error(`the lab's rendezvous is not on PostgreSQL: store ${ready.store}`);
    } catch (e) {
      await pilot.stop();
      throw e;
    }
    return pilot;
  }

  private spawn(host: Host, args: string[], env: Record<string, string>): Proc {
    const [cmd, ...rest] = this.lab.wrap(host, [process.execPath, MAIN, ...args]);
    const child = spawn(cmd!, rest, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const p: Proc = { child, output: "" };
    this.procs.push(p);
    if (child.pid !== undefined) {
      running.add(child.pid);
      child.once("exit", () => running.delete(child.pid!));
    }
    return p;
  }

  /**
   * Starts a public daemon on `host` (its home is kept across restarts, so
   * it keeps its identity and node id) and connects a driver to it.
   */
  async daemon(host: Host, env: Record<string, string> = {}, extraArgs: string[] = []): Promise<LabDaemon> {
    if (this.daemons.has(host)) throw new Error(`a daemon already runs on ${host}`);
    const home = join(this.dir, host);
    mkdirSync(home, { recursive: true });
    const p = this.spawn(
      host,
      ["daemon", "start", "--foreground", "--json", "--registry", REGISTRY, "--beacon", BEACON, "--listen", process.env.LAB_LISTEN ?? "0.0.0.0:0", "--public", "--log-level", process.env.LAB_LOG_LEVEL ?? "info", ...extraArgs],
      { PILOT_HOME: home, ...this.env, ...env },
    );
    const data = await waitForJsonLine(p, `the daemon on ${host}`);
    const driver = await connect({ home });
    const port = Number(String(data.endpoint).split(":").pop());
    const d = { host, home, pid: p.child.pid!, address: data.address as string, nodeId: data.node_id as number, driver, port, proc: p, log: () => p.output };
    this.daemons.set(host, d);
    return d;
  }

  /**
   * Runs a helper script (e.g. test/support/connect-proxy.ts) with bun inside `host`'s namespace,
   * waits for `ready` in its output, and returns its output so far and a stop function (by pid).
   */
  async helper(host: Host, script: string, args: string[], ready: string): Promise<{ output: () => string; stop: () => Promise<void> }> {
    const [cmd, ...rest] = this.lab.wrap(host, [process.execPath, script, ...args]);
    const child = spawn(cmd!, rest, { cwd: ROOT, env: process.env, stdio: ["ignore", "pipe", "pipe"] });
    const p: Proc = { child, output: "" };
    this.procs.push(p);
    if (child.pid !== undefined) {
      running.add(child.pid);
      child.once("exit", () => running.delete(child.pid!));
    }
    await new Promise<void>((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${p.output}`)), 20_000);
      const check = () => {
        if (p.output.includes(ready)) {
          clearTimeout(timer);
          resolvePromise();
        }
      };
      child.stdout!.on("data", (d) => ((p.output += d), check()));
      child.stderr!.on("data", (d) => (p.output += d));
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${script} exited with ${code}:\n${p.output}`));
      });
    });
    return { output: () => p.output, stop: () => stopProc(p) };
  }

  async stopDaemon(host: Host): Promise<void> {
    const d = this.daemons.get(host);
    if (!d) return;
    this.daemons.delete(host);
    d.driver.close();
    await stopProc(d.proc);
  }

  /** The `peers` entry `from` has for `to` (path, endpoint, rtt_ms, ...), or undefined. */
  async peer(from: LabDaemon, to: LabDaemon): Promise<any> {
    const r = (await from.driver.call("peers")) as { peers: any[] };
    return r.peers.find((p) => p.node_id === to.nodeId);
  }

  /** Waits until `from` shows `path` toward `to`. */
  async waitPath(from: LabDaemon, to: LabDaemon, path: string, timeoutMs = 15_000): Promise<any> {
    const deadline = performance.now() + timeoutMs;
    let last: any;
    while (performance.now() < deadline) {
      last = await this.peer(from, to);
      if (last?.path === path) return last;
      await Bun.sleep(100);
    }
    throw new Error(`${from.host} -> ${to.host}: path is ${last?.path ?? "(no peer)"}, not ${path}, after ${timeoutMs} ms\n--- ${from.host} log ---\n${tail(from.log())}\n--- ${to.host} log ---\n${tail(to.log())}`);
  }

  async stop(): Promise<void> {
    for (const d of this.daemons.values()) d.driver.close();
    this.daemons.clear();
    await Promise.all(this.procs.map(stopProc));
    await this.postgres?.stop();
    this.postgres = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

async function stopProc(p: Proc): Promise<void> {
  const pid = p.child.pid;
  if (pid === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.child.once("exit", () => r()));
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }, 5000);
  await exited;
  clearTimeout(timer);
}

/** Deterministic bytes: byte i of a stream is TABLE[i % PERIOD] (a prime period, so chunk edges never line up). */
const PERIOD = 65_521;
const TABLE = (() => {
  const t = new Uint8Array(PERIOD * 2);
  let x = 0x9e3779b9;
  for (let i = 0; i < PERIOD; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    t[i] = x & 0xff;
  }
  t.copyWithin(PERIOD, 0, PERIOD);
  return t;
})();

function patternAt(offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const at = (offset + done) % PERIOD;
    const n = Math.min(length - done, PERIOD);
    out.set(TABLE.subarray(at, at + n), done);
    done += n;
  }
  return out;
}

/** Checks that `chunk` is the pattern at `offset`; returns the first mismatching stream offset, or -1. */
function mismatch(chunk: Uint8Array, offset: number): number {
  for (let done = 0; done < chunk.length; ) {
    const at = (offset + done) % PERIOD;
    const n = Math.min(chunk.length - done, PERIOD);
    const want = TABLE.subarray(at, at + n);
    const got = chunk.subarray(done, done + n);
    if (!Buffer.from(got.buffer, got.byteOffset, got.length).equals(want)) {
      for (let i = 0; i < n; i++) if (got[i] !== want[i]) return offset + done + i;
    }
    done += n;
  }
  return -1;
}

export interface TransferResult {
  bytes: number;
  /** From the dial (no tunnel yet, if it is the first contact) to the first byte at the receiver. */
  ttfbMs: number;
  /** Receiver-side throughput from the first to the last byte. */
  mbytesPerSec: number;
  totalMs: number;
}

/**
 * Dials from `from` to a sink on `to`, streams `bytes` of the pattern and
 * checks every byte at the sink. `during(sent)` runs while sending (e.g. to
 * break something mid-transfer); `paceBytesPerSec` slows the writer so the
 * transfer lasts long enough for that.
 */
export async function transfer(
  from: LabDaemon,
  to: LabDaemon,
  bytes: number,
  options: { port?: number; paceBytesPerSec?: number; during?: () => Promise<void> | void; duringAt?: number; timeoutMs?: number; keepOpen?: boolean } = {},
): Promise<TransferResult & { socket?: PilotSocket }> {
  const port = options.port ?? 5001;
  const server = await to.driver.listen(port);
  try {
    let received = 0;
    let firstAt = 0;
    let lastAt = 0;
    let bad = -1;
    const done = new Promise<void>((resolveDone, reject) => {
      const timer = setTimeout(() => reject(new Error(`transfer ${from.host} -> ${to.host}: ${received} of ${bytes} bytes after ${options.timeoutMs ?? 60_000} ms`)), options.timeoutMs ?? 60_000);
      server.once("connection", (s: PilotSocket) => {
        s.on("data", (chunk: Buffer) => {
          const now = performance.now();
          if (received === 0) firstAt = now;
          if (bad < 0) bad = mismatch(chunk, received);
          received += chunk.length;
          lastAt = now;
          if (received >= bytes) {
            clearTimeout(timer);
            resolveDone();
          }
        });
        s.on("error", (e) => {
          clearTimeout(timer);
          if (received < bytes) reject(e);
        });
      });
    });
    const started = performance.now();
    const socket = await from.driver.dial(to.address, port, { timeoutMs: 20_000 });
    // Errors after the transfer (a daemon stopping resets what is left) are not the test's business.
    socket.on("error", () => {});
    const chunk = 64 * 1024;
    let sent = 0;
    let duringRun: Promise<void> | undefined;
    while (sent < bytes) {
      const n = Math.min(chunk, bytes - sent);
      const ok = socket.write(patternAt(sent, n));
      sent += n;
      if (options.during && !duringRun && sent >= (options.duringAt ?? bytes / 3)) duringRun = Promise.resolve(options.during());
      if (!ok) await new Promise<void>((r) => socket.once("drain", () => r()));
      if (options.paceBytesPerSec) {
        const due = started + (sent / options.paceBytesPerSec) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await Bun.sleep(wait);
      }
    }
    await done;
    await duringRun;
    if (bad >= 0) throw new Error(`transfer ${from.host} -> ${to.host}: byte ${bad} differs`);
    if (!options.keepOpen) socket.end();
    return {
      bytes: received,
      ttfbMs: firstAt - started,
      mbytesPerSec: received / 1e6 / Math.max(0.001, (lastAt - firstAt) / 1000),
      totalMs: lastAt - started,
      ...(options.keepOpen ? { socket } : {}),
    };
  } finally {
    if (!options.keepOpen) await server.close();
  }
}

/**
 * Declares the tests of one NAT lab file: `suite` runs when the lab can run
 * here. Run by a normal user (or with PILOT_SKIP_NATLAB=1) the file is
 * skipped loudly, saying what goes untested (namespaces need root, as `sudo`
 * would for anyone); run as root without ip or nft it fails and says why, so
 * that a root CI never skips it silently.
 */
export function natlabSuite(name: string, untested: string, suite: () => void): void {
  const skip = process.env.PILOT_SKIP_NATLAB === "1";
  const notRoot = typeof process.getuid === "function" && process.getuid() !== 0;
  if (skip || notRoot) {
    const why = skip ? "PILOT_SKIP_NATLAB=1" : "not root: network namespaces and NATs need root (run the suite with sudo, or as CI does, to include it)";
    console.warn(`\n*** NAT lab (${name}) SKIPPED (${why}): ${untested} are NOT being tested ***\n`);
    test.skip(`NAT lab: ${name} (skipped: ${why})`, () => {});
    return;
  }
  const unavailable = labUnavailable();
  if (unavailable) {
    console.error(`\n*** NAT lab (${name}) cannot run here: ${unavailable} ***\n*** It needs root, iproute2 (ip) and nftables (nft). Set PILOT_SKIP_NATLAB=1 to skip it explicitly. ***\n`);
    test(`NAT lab prerequisites (${name})`, () => {
      throw new Error(`the NAT lab cannot run: ${unavailable}. Run as root with ip and nft, or set PILOT_SKIP_NATLAB=1 to skip it explicitly.`);
    });
    return;
  }
  suite();
}

/** The lab of one test file, with its rendezvous: made before the file's tests, removed after them. */
export interface LabFixture {
  readonly lab: NatLab;
  readonly pilot: LabPilot;
}

/**
 * Builds the lab (NATs of the given types, then `prepare`) and starts its
 * rendezvous before the file's tests; afterwards stops everything, removes
 * the lab and prints `report()` (the file's measures) if it says anything.
 */
export function useLab(options: { nats?: { nat1?: NatType; nat2?: NatType }; prepare?: (lab: NatLab) => void; rendezvousArgs?: string[]; report?: () => string | undefined } = {}): LabFixture {
  let lab: NatLab | undefined;
  let pilot: LabPilot | undefined;
  // Longer than the 30 s default: a lab with a rendezvous on PostgreSQL takes a while to come up on a loaded machine.
  beforeAll(async () => {
    lab = NatLab.create(options.nats ?? {});
    try {
      options.prepare?.(lab);
      pilot = await LabPilot.start(lab, {}, options.rendezvousArgs ?? []);
    } catch (e) {
      lab.destroy();
      throw e;
    }
  }, 60_000);
  afterAll(async () => {
    try {
      await pilot?.stop();
    } finally {
      lab?.destroy();
    }
    const report = options.report?.();
    if (report) console.log(report);
  }, 60_000);
  return {
    get lab() {
      if (!lab) throw new Error("the lab is made in beforeAll");
      return lab;
    },
    get pilot() {
      if (!pilot) throw new Error("the lab's rendezvous starts in beforeAll");
      return pilot;
    },
  };
}
