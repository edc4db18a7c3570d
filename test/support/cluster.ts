/**
 * Real processes for integration tests: a rendezvous and any number of
 * daemons, each in its own temporary PILOT_HOME, all on 127.0.0.1. Commands
 * run through the real CLI (from source, or the compiled binary when
 * PILOT_BIN is set). Everything started here is stopped by pid in `stop()`,
 * which tests call from afterAll/finally, so nothing outlives a failed test.
 *
 *   const c = await startCluster({ daemons: [{ name: "a", hostname: "agent-a" }, { name: "b" }] });
 *   const r = await c.pilot("a", ["info"]);        // { code, stdout, stderr, json }
 *   await c.trust("a", "b");                       // b asks, a approves
 *   await c.stop();
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");

/** The command that runs `pilot`: the compiled binary if PILOT_BIN is set, else the CLI from source. */
export function pilotCommand(): string[] {
  const bin = process.env.PILOT_BIN;
  return bin ? [resolve(ROOT, bin)] : [process.execPath, join(ROOT, "src/cli/main.ts")];
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The parsed envelope when the command ran with --json and printed one. */
  json: any;
}

export interface RunOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  input?: string;
}

/**
 * Runs `argv` to the end (killed after `timeoutMs`) and collects its output; `json` is
 * the last line of stdout (exit 0) or stderr (otherwise) when it parses as JSON.
 */
export async function runCommand(argv: string[], options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const proc = Bun.spawn(argv, {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? process.env,
    stdin: options.input !== undefined ? new TextEncoder().encode(options.input) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 30_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  let json: any;
  const line = (code === 0 ? stdout : stderr).trim().split("\n").pop();
  if (line) {
    try {
      json = JSON.parse(line);
    } catch {
      json = undefined;
    }
  }
  return { code, stdout, stderr, json };
}

export async function runPilot(args: string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await runCommand([...pilotCommand(), ...args], { env: { ...process.env, ...options.env }, timeoutMs: options.timeoutMs, input: options.input });
  // Only a --json run's last line is its envelope.
  return args.includes("--json") ? r : { ...r, json: undefined };
}

export interface DaemonSpec {
  name: string;
  hostname?: string;
  public?: boolean;
  tags?: string[];
  extraArgs?: string[];
}

export interface TestDaemon {
  readonly name: string;
  readonly home: string;
  readonly socket: string;
  readonly env: Record<string, string>;
  address: string;
  nodeId: number;
  pid: number;
  /** IP:PORT of its metrics listener as `daemon start` reported it (with --metrics), else null. */
  metrics: string | null;
}

export interface Cluster {
  readonly dir: string;
  readonly registry: string;
  readonly beacon: string;
  readonly rendezvousPid: number;
  /** The rendezvous's ready data (`metrics` with rendezvousArgs --metrics). */
  readonly rendezvousReady: Record<string, any>;
  readonly daemons: Map<string, TestDaemon>;
  daemon(name: string): TestDaemon;
  /** Runs `pilot args --json` (unless `json: false`) as daemon `name`'s user. */
  pilot(name: string, args: string[], options?: RunOptions & { json?: boolean }): Promise<RunResult>;
  startDaemon(spec: DaemonSpec): Promise<TestDaemon>;
  stopDaemon(name: string): Promise<void>;
  restartRendezvous(): Promise<void>;
  /** `b` asks `a` for trust, `a` approves; resolves when both see it. */
  trust(a: string, b: string): Promise<void>;
  stop(): Promise<void>;
}

const started = new Set<number>();

function killQuietly(pid: number, signal: NodeJS.Signals = "SIGTERM"): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Running (a zombie waiting to be reaped counts as gone). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await Bun.sleep(25);
  }
  return false;
}

async function stopPid(pid: number): Promise<void> {
  killQuietly(pid, "SIGTERM");
  if (!(await waitForExit(pid, 5000))) killQuietly(pid, "SIGKILL");
  started.delete(pid);
}

interface RendezvousProcess {
  child: ChildProcess;
  registry: string;
  beacon: string;
  /** Its ready envelope's data (metrics URL with --metrics, ...). */
  ready: Record<string, any>;
}

async function launchRendezvous(home: string, registryAddr = "127.0.0.1:0", beaconAddr = "127.0.0.1:0", extraArgs: string[] = []): Promise<RendezvousProcess> {
  const [cmd, ...base] = pilotCommand();
  const child = spawn(cmd!, [...base, "rendezvous", "--json", "--registry-addr", registryAddr, "--beacon-addr", beaconAddr, ...extraArgs], {
    cwd: ROOT,
    env: { ...process.env, PILOT_HOME: home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.add(child.pid!);
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const ready = await new Promise<any>((resolveReady, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`rendezvous did not start: ${stderr}`)), 15_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) {
        clearTimeout(timer);
        resolveReady(JSON.parse(line));
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`rendezvous exited with ${code}: ${stderr}`));
    });
  });
  child.stdout!.resume();
  return { child, registry: ready.data.registry, beacon: ready.data.beacon, ready: ready.data };
}

export async function startCluster(options: { daemons?: DaemonSpec[]; rendezvousArgs?: string[]; beaconAddr?: string } = {}): Promise<Cluster> {
  const dir = mkdtempSync("/tmp/pilot-test-");
  const rvHome = join(dir, "rendezvous");
  let rv = await launchRendezvous(rvHome, undefined, options.beaconAddr, options.rendezvousArgs);
  const daemons = new Map<string, TestDaemon>();

  const cluster: Cluster = {
    dir,
    get registry() {
      return rv.registry;
    },
    get beacon() {
      return rv.beacon;
    },
    get rendezvousPid() {
      return rv.child.pid!;
    },
    get rendezvousReady() {
      return rv.ready;
    },
    daemons,
    daemon(name) {
      const d = daemons.get(name);
      if (!d) throw new Error(`no daemon ${name}`);
      return d;
    },
    async pilot(name, args, opts = {}) {
      const d = cluster.daemon(name);
      const full = opts.json === false || args.includes("--json") ? args : [...args, "--json"];
      return runPilot(full, { ...opts, env: { ...d.env, ...opts.env } });
    },
    async startDaemon(spec) {
      const home = join(dir, spec.name);
      const env = { PILOT_HOME: home };
      const args = ["daemon", "start", "--json", "--registry", rv.registry, "--beacon", rv.beacon, "--listen", "127.0.0.1:0"];
      if (spec.hostname) args.push("--hostname", spec.hostname);
      if (spec.public) args.push("--public");
      if (spec.tags) args.push("--tags", spec.tags.join(","));
      args.push(...(spec.extraArgs ?? []));
      const r = await runPilot(args, { env });
      if (r.code !== 0) throw new Error(`daemon ${spec.name} did not start: ${r.stderr || r.stdout}`);
      const data = r.json.data;
      started.add(data.pid);
      const d: TestDaemon = { name: spec.name, home, socket: join(home, "pilot.sock"), env, address: data.address, nodeId: data.node_id, pid: data.pid, metrics: data.metrics ?? null };
      daemons.set(spec.name, d);
      return d;
    },
    async stopDaemon(name) {
      const d = cluster.daemon(name);
      await stopPid(d.pid);
    },
    async restartRendezvous() {
      const [registry, beacon] = [rv.registry, rv.beacon];
      await stopPid(rv.child.pid!);
      rv = await launchRendezvous(rvHome, registry, beacon, options.rendezvousArgs);
    },
    async trust(a, b) {
      const da = cluster.daemon(a);
      const req = await cluster.pilot(b, ["handshake", String(da.nodeId), "integration test"]);
      if (req.code !== 0) throw new Error(`handshake failed: ${req.stderr}`);
      const ok = await cluster.pilot(a, ["approve", String(cluster.daemon(b).nodeId)]);
      if (ok.code !== 0) throw new Error(`approve failed: ${ok.stderr}`);
      for (let i = 0; i < 100; i++) {
        const t = await cluster.pilot(b, ["trust"]);
        if (t.json?.data?.trusted?.some((x: any) => x.node_id === da.nodeId)) return;
        await Bun.sleep(50);
      }
      throw new Error(`${b} never saw trust with ${a}`);
    },
    async stop() {
      await Promise.all([...daemons.values()].map((d) => stopPid(d.pid)));
      await stopPid(rv.child.pid!);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    for (const spec of options.daemons ?? []) await cluster.startDaemon(spec);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/** Last resort for a crashed test run: every process this module started. */
process.on("exit", () => {
  for (const pid of started) killQuietly(pid, "SIGKILL");
});

export function readLog(d: TestDaemon): string {
  try {
    return readFileSync(join(d.home, "pilot.log"), "utf8");
  } catch {
    return "";
  }
}
