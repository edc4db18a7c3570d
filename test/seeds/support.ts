/**
 * The lab the seed tests run the walkthroughs in: a network namespace of
 * their own (`ip netns add <name>-<pid>`), a rendezvous and daemons inside
 * it, `pilotctl` on the PATH of the commands they run (a link to $PILOT_BIN
 * when set, else a two-line wrapper around `bun src/cli/main.ts`; the CLI
 * names itself after argv0), and cleanup of all of it by pid, namespace and
 * directory in `stop()`, even when a test failed.
 *
 * Every process runs under `ip netns exec`, with no proxy variables (curl
 * and Python's requests honour http_proxy), so the gateway's 10.4.0.0/16 and
 * its loopback aliases never touch the host's interfaces.
 *
 * A lab that cannot run (not root, no netns, a missing tool) has a
 * `skipReason`, and its test file says loudly what is NOT tested.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pilotCommand, ROOT, runCommand, type RunResult } from "../support/cluster.ts";
import { spawnIn, stopAll, type Spawned } from "../examples/support.ts";
import { alive, IS_ROOT } from "../gateway/support.ts";

/** A python3 that can `import requests`: the one on PATH, else Debian's. */
export function findPython(): string | null {
  for (const python of ["python3", "/usr/bin/python3"]) {
    const r = spawnSync(python, ["-c", "import requests"], { encoding: "utf8" });
    if (!r.error && r.status === 0) return python;
  }
  return null;
}

export interface SeedLabOptions {
  /** Prefix of the namespace's name (the pid is appended) and of the temporary directory. */
  name: string;
  /** The test file, for the skip warning. */
  file: string;
  /** What is not tested when the lab is skipped, for the warning. */
  untested: string;
}

export class SeedLab {
  readonly ns: string;
  /** Why the lab cannot run here (the tests are then skipped), or null. */
  readonly skipReason: string | null;
  /** python3 with requests (null when missing: the lab is skipped). */
  readonly python: string | null;
  readonly dir: string;
  readonly binDir: string;
  /** PILOT_HOME, address and node id of each daemon, by the name the test gave it. */
  readonly homes = new Map<string, string>();
  readonly addresses = new Map<string, string>();
  readonly nodeIds = new Map<string, number>();
  registry = "";
  beacon = "";
  /** Daemons, gateways and other processes to stop by pid (besides those spawned with `spawn`). */
  readonly pids = new Set<number>();

  constructor(options: SeedLabOptions) {
    this.ns = `${options.name}-${process.pid}`;
    this.python = findPython();
    this.skipReason = this.probe();
    if (this.skipReason) {
      console.warn(`\n*** ${options.file} SKIPPED: ${this.skipReason}. ${options.untested} NOT tested. ***\n`);
    }
    this.dir = this.skipReason ? "" : mkdtempSync(`/tmp/${options.name}-`);
    this.binDir = this.skipReason ? "" : join(this.dir, "bin");
  }

  private probe(): string | null {
    if (!IS_ROOT) return "not root";
    if (!this.python) return "no python3 with the requests module (apt-get install python3-requests)";
    if (spawnSync("curl", ["--version"]).error) return "no curl";
    const add = spawnSync("ip", ["netns", "add", this.ns], { encoding: "utf8" });
    if (add.error) return `no ip command (${add.error.message})`;
    if (add.status !== 0) return `ip netns add failed: ${add.stderr.trim()}`;
    const up = spawnSync("ip", ["-n", this.ns, "link", "set", "lo", "up"], { encoding: "utf8" });
    if (up.status !== 0) return `cannot bring lo up in ${this.ns}: ${up.stderr.trim()}`;
    return null;
  }

  /** What the child processes see: no proxy, pilotctl first on PATH, no colours. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/_proxy$/i.test(k)) env[k] = v;
    return { ...env, NO_PROXY: "*", no_proxy: "*", NO_COLOR: "1", PATH: `${this.binDir}:${process.env.PATH ?? "/usr/bin:/bin"}`, ...extra };
  }

  /** Runs argv inside the namespace, to completion. */
  run(argv: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<RunResult> {
    return runCommand(["ip", "netns", "exec", this.ns, ...argv], { env: this.env(env), timeoutMs });
  }

  /** `pilotctl ARGS` (the one on PATH) as the user of daemon `name`, inside the namespace. */
  pilotctl(name: string, args: string[]): Promise<RunResult> {
    return this.run([join(this.binDir, "pilotctl"), ...args], { PILOT_HOME: this.home(name) });
  }

  /** A long-running process inside the namespace (stopped by `stop()`). */
  spawn(argv: string[], env: Record<string, string> = {}): Spawned {
    return spawnIn(["ip", "netns", "exec", this.ns, ...argv], this.env(env));
  }

  home(name: string): string {
    const home = this.homes.get(name);
    if (!home) throw new Error(`no daemon called ${name} in the lab`);
    return home;
  }

  /** Puts `pilotctl` on PATH and starts the rendezvous on ephemeral ports. */
  async start(): Promise<void> {
    mkdirSync(this.binDir);
    const pilotctlPath = join(this.binDir, "pilotctl");
    if (process.env.PILOT_BIN) symlinkSync(resolve(ROOT, process.env.PILOT_BIN), pilotctlPath);
    else {
      const [bun, main] = pilotCommand();
      writeFileSync(pilotctlPath, `#!/bin/sh\nexec "${bun}" "${main}" "$@"\n`);
      chmodSync(pilotctlPath, 0o755);
    }
    const rv = this.spawn([...pilotCommand(), "rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0"], { PILOT_HOME: join(this.dir, "rendezvous") });
    this.pids.add(rv.pid);
    const ready = JSON.parse((await rv.waitFor(/\{.*"registry".*\}/))[0]).data;
    this.registry = ready.registry;
    this.beacon = ready.beacon;
  }

  /** Starts a daemon called `name` (its PILOT_HOME is a folder of the lab) with `hostname` and `tags`. */
  async startDaemon(name: string, hostname: string, tags = ""): Promise<void> {
    this.homes.set(name, join(this.dir, name));
    const args = ["--json", "daemon", "start", "--registry", this.registry, "--beacon", this.beacon, "--listen", "127.0.0.1:0", "--hostname", hostname];
    const r = await this.pilotctl(name, tags ? [...args, "--tags", tags] : args);
    if (r.code !== 0) throw new Error(`daemon ${name} did not start: ${r.stderr}`);
    this.pids.add(r.json.data.pid);
    this.addresses.set(name, r.json.data.address);
    this.nodeIds.set(name, r.json.data.node_id);
  }

  /** `caller` asks `agent` for trust and `agent` approves; resolves once the caller sees it. */
  async trust(agent: string, caller: string): Promise<void> {
    const ida = this.nodeIds.get(agent)!;
    const idb = this.nodeIds.get(caller)!;
    const asked = await this.pilotctl(caller, ["--json", "handshake", String(ida), "seed test"]);
    if (asked.code !== 0) throw new Error(`handshake ${caller} -> ${agent} failed: ${asked.stderr}`);
    const approved = await this.pilotctl(agent, ["--json", "approve", String(idb)]);
    if (approved.code !== 0) throw new Error(`approve ${agent} <- ${caller} failed: ${approved.stderr}`);
    for (let i = 0; i < 100; i++) {
      const t = await this.pilotctl(caller, ["--json", "trust"]);
      if (t.json?.data?.trusted?.some((x: any) => x.node_id === ida)) return;
      await Bun.sleep(50);
    }
    throw new Error(`${caller} never saw trust with ${agent}`);
  }

  /**
   * Stops everything: the gateways of `gatewaysOf` (so they remove their
   * aliases), the spawned processes, every pid, then the namespace and the
   * directory.
   */
  async stop(gatewaysOf: string[] = []): Promise<void> {
    if (this.skipReason && !existsSync(`/run/netns/${this.ns}`)) return;
    for (const name of gatewaysOf) if (this.homes.has(name)) await this.pilotctl(name, ["--json", "gateway", "stop"]).catch(() => {});
    await stopAll(); // the spawned ones (rendezvous, examples), by pid
    for (const pid of this.pids) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
    }
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && [...this.pids].some(alive)) await Bun.sleep(50);
    for (const pid of this.pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    spawnSync("ip", ["netns", "del", this.ns]);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
