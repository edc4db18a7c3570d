/**
 * `pilot gateway start|map|unmap|list|stop`: map remote agents to local IPs
 * so that curl, browsers and any HTTP or TCP client reach them unchanged.
 *
 * `start` runs the gateway as a detached background process (its own
 * session; output in `$PILOT_HOME/gateway/gateway.log`) and returns once it
 * listens; `--foreground` runs it in this process. A second `start` while a
 * gateway runs adds the new mappings to it. Every other command talks to the
 * running gateway through its control socket (src/gateway/control.ts).
 */
import { spawn } from "node:child_process";
import { closeSync, constants, openSync, readFileSync, statSync } from "node:fs";
import type { CommandSpec, GroupSpec } from "../command.ts";
import type { Output } from "../output.ts";
import { CliError, type ErrorCodeName } from "../errors.ts";
import { ipv4Option, logLevelOption, portsOption, subnetOption, targetArg } from "../args.ts";
import { table } from "../format.ts";
import { withDaemon } from "../daemon-client.ts";
import { parseLogLevel, createLogger } from "../../util/log.ts";
import { AliasLedger, chownQuietly, cleanupLeftovers, isGatewayProcess, isRoot, processAlive } from "../../gateway/aliases.ts";
import { controlRequest, LOG_FILE, notRunningError, probe } from "../../gateway/control.ts";
import { GatewayError } from "../../gateway/errors.ts";
import type { MappingInfo } from "../../gateway/gateway.ts";
import { describeHome, gatewayDirs, prepareGatewayDir, runGateway, subnetNeedsRoot, type GatewayDirs } from "../../gateway/run.ts";
import { formatIPv4, parseSubnet, type Subnet } from "../../gateway/subnet.ts";
import { pilotPaths } from "../../util/paths.ts";
import { notRootError } from "../../gateway/aliases.ts";

export const DEFAULT_SUBNET = "10.4.0.0/16";
export const DEFAULT_PORTS = [80];
const START_TIMEOUT_MS = 15_000;

export const gatewayGroup: GroupSpec = { name: "gateway", description: "map remote agents to local IPs for curl, browsers and any TCP client" };

// ---- shared helpers --------------------------------------------------------------

function cliError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof GatewayError) return new CliError(e.code as ErrorCodeName, e.message, e.hint);
  const err = e as { code?: unknown; message?: unknown; hint?: unknown };
  if (err && typeof err.code === "string" && typeof err.message === "string" && /^[a-z_]+$/.test(err.code)) {
    return new CliError(err.code as ErrorCodeName, err.message, typeof err.hint === "string" ? err.hint : undefined);
  }
  return new CliError("internal", e instanceof Error ? e.message : String(e));
}

async function guarded<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw cliError(e);
  }
}

/** The secure ports of a mapping as any gateway reports it (one from before secure_ports: all or none). */
function securePortsOf(m: { ports: number[]; secure?: boolean; secure_ports?: number[] }): number[] {
  return Array.isArray(m.secure_ports) ? m.secure_ports : m.secure ? [...m.ports] : [];
}

/** What `start` and `map` report per mapping. */
function brief(m: MappingInfo): { local_ip: string; pilot_addr: string; hostname: string | null; ports: number[]; secure_ports: number[]; secure: boolean } {
  const secure_ports = securePortsOf(m);
  return { local_ip: m.local_ip, pilot_addr: m.pilot_addr, hostname: m.hostname, ports: m.ports, secure_ports, secure: m.ports.length > 0 && secure_ports.length === m.ports.length };
}

/** " (secure channel)" when every port is secure, " (secure channel on 443)" when some are. */
function secureSuffix(m: { ports: number[]; secure_ports: number[] }, words: [string, string]): string {
  if (m.secure_ports.length === 0) return "";
  if (m.secure_ports.length === m.ports.length) return ` (${words[0]})`;
  return ` (${words[1]} ${m.secure_ports.join(",")})`;
}

function activeLine(m: { local_ip: string; pilot_addr: string; ports: number[]; secure_ports: number[] }): string {
  return `Gateway active: ${m.pilot_addr} -> ${m.local_ip}:${m.ports.join(",")}${secureSuffix(m, ["secure channel", "secure channel on"])}`;
}

/** Re-runs this executable (compiled) or this script (from source) with `args`. */
function selfCommand(args: string[]): string[] {
  const script = process.argv[1] ?? "";
  const compiled = script.startsWith("/$bunfs/") || script === process.execPath;
  return compiled ? [process.execPath, ...args] : [process.execPath, script, ...args];
}

/** Which PILOT_HOME a gateway command uses, for --json: the path and where it came from. */
function homeFields(dirs: GatewayDirs): { pilot_home: string; pilot_home_from: string; sudo_user?: string } {
  return { pilot_home: dirs.home, pilot_home_from: dirs.homeFrom, ...(dirs.sudoUser ? { sudo_user: dirs.sudoUser } : {}) };
}

function tail(path: string, from: number): string {
  try {
    return readFileSync(path, "utf8").slice(from).trimEnd();
  } catch {
    return "";
  }
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!processAlive(pid)) return true;
    await Bun.sleep(25);
  }
  return !processAlive(pid);
}

// ---- start -----------------------------------------------------------------------

/** Spawns the background gateway and waits until it answers; returns its status (another gateway's if one won a race). */
async function spawnGateway(subnet: Subnet, logLevel: string, out: Output): Promise<{ pid: number; subnet: string; spawned: boolean }> {
  const paths = pilotPaths();
  const dirs = gatewayDirs();
  await guarded(async () => prepareGatewayDir(dirs));
  const logPath = `${dirs.dir}/${LOG_FILE}`;
  let logFd: number;
  try {
    // O_NOFOLLOW: never append to whatever a symlink in that directory points at.
    logFd = openSync(logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw new CliError("internal", `cannot open the gateway log ${logPath}: ${(e as Error).message}`, "if it is a symlink, remove it");
  }
  if (dirs.owner) chownQuietly(logPath, dirs.owner);
  const logStart = statSync(logPath).size;
  const [cmd, ...args] = selfCommand(["gateway", "start", "--foreground", "--json", "--subnet", subnet.text, "--log-level", logLevel]);
  const child = spawn(cmd!, args, { detached: true, stdio: ["ignore", logFd, logFd], env: { ...process.env, PILOT_HOME: paths.home } });
  closeSync(logFd);
  let exited: number | null = null;
  child.on("exit", (code) => (exited = code ?? 1));
  child.unref();
  out.progress(`starting the gateway (pid ${child.pid}, subnet ${subnet.text})...`);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const status = await probe(dirs.socket, 500).catch(() => null);
    if (status && status.pid === child.pid) return { ...status, spawned: true };
    if (exited !== null) {
      // Another `start` may have won the race: use its gateway.
      const other = await probe(dirs.socket, 1000).catch(() => null);
      if (other) return { ...other, spawned: false };
      const log = tail(logPath, logStart);
      const envelope = log.split("\n").filter((l) => l.includes('"status":"error"')).pop();
      if (envelope) {
        try {
          const e = JSON.parse(envelope);
          throw new CliError(e.code as ErrorCodeName, e.message, e.hint);
        } catch (e) {
          if (e instanceof CliError) throw e;
        }
      }
      const line = log.split("\n").filter((l) => /error/i.test(l)).pop() ?? log.split("\n").pop() ?? "";
      throw new CliError("internal", `the gateway exited during start-up (code ${exited}): ${line.replace(/^error:\s*/, "")}`, `see its log: ${logPath}`);
    }
    await Bun.sleep(50);
  }
  throw new CliError("timeout", `the gateway (pid ${child.pid}) did not become ready within ${START_TIMEOUT_MS / 1000} s`, `see its log: ${logPath}`);
}

async function startForeground(out: Output, subnet: Subnet, targets: string[], ports: number[], secure: boolean, logLevel: string): Promise<void> {
  const level = parseLogLevel(logLevel);
  const log = createLogger("gateway", { level });
  const dirs = gatewayDirs();
  out.progress(`using PILOT_HOME ${describeHome(dirs)}`);
  const running = await guarded(() => runGateway({ subnet, targets, ports, secure, log }));
  // A bug must not leave aliases behind: clean up, then exit non-zero.
  const fail = (e: unknown) => {
    const error = e instanceof Error ? e : new Error(String(e));
    log.error("unexpected failure; stopping", { error: error.message, stack: error.stack });
    void running.stop("unexpected failure").finally(() => process.exit(1));
  };
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  out.result(
    { pid: running.pid, subnet: subnet.text, mappings: running.initial.map(brief), foreground: true, ...homeFields(dirs) },
    (d: any) =>
      [...d.mappings.map(activeLine), `Gateway running in the foreground (pid ${d.pid}, subnet ${d.subnet}); stop it with Ctrl-C or: pilot gateway stop`].join("\n"),
  );
  await running.stopped;
  // Let the answer to a `stop` request reach its caller before the process goes.
  await Bun.sleep(50);
  process.exit(0);
}

export const gatewayStart: CommandSpec = {
  group: "gateway",
  name: "start",
  args: "[...targets]",
  description:
    "Map remote agents to local IPs (10.4.0.1, 10.4.0.2, ...) so plain TCP/HTTP clients reach their Pilot ports; runs in the background, and adds to the gateway that is already running",
  options: [
    { flags: "--subnet <cidr>", description: `local IPs come from this IPv4 subnet (default ${DEFAULT_SUBNET}, which needs root for its loopback aliases; a subnet inside 127.0.0.0/8, e.g. 127.77.0.0/16, needs no alias and no root on Linux)` },
    { flags: "--ports <list>", description: `comma-separated TCP ports to forward, each to the same Pilot port of the agent (default ${DEFAULT_PORTS.join(",")}; ports below 1024 need root)` },
    { flags: "--secure", description: "also encrypt each connection to these ports end to end with the secure channel (the agent serves with listenSecure / serveHttp(port, h, { secure: true }), usually on port 443); the same agent's other ports can stay plain" },
    { flags: "--foreground", description: "run the gateway in this process (for systemd, containers and tests); stop it with Ctrl-C, SIGTERM or: pilot gateway stop" },
    { flags: "--log-level <level>", description: "debug, info, warn or error (default info)" },
  ],
  examples: [
    "pilot gateway start --ports 80 data-analyst          # as root (sudo): curl http://10.4.0.1/",
    "pilot gateway start --ports 80 code-reviewer         # added to the running gateway: 10.4.0.2",
    "pilot gateway start --subnet 127.77.0.0/16 --ports 8080 agent-b   # no root needed: 127.77.0.1:8080",
    "pilot gateway start --ports 443 --secure data-analyst # the same agent's port 443 over the secure channel, next to plain 80",
  ],
  returns: {
    pid: "the gateway's process id",
    subnet: "the subnet its local IPs come from",
    started: "true if this command started the gateway, false if it added to a running one",
    mappings: "one {local_ip, pilot_addr, hostname, ports, secure_ports, secure} per target",
    pilot_home: "the PILOT_HOME it uses (whose daemon it dials through, where its files are)",
    pilot_home_from: '"PILOT_HOME" (the variable), "sudo" (the home of the user who ran sudo: SUDO_USER) or "home" (~/.pilot)',
    sudo_user: "the user who ran sudo, when pilot_home_from is sudo",
  },
  errors: ["not_running", "not_found", "unauthorized", "port_in_use", "already_exists", "invalid_argument", "limit_exceeded", "timeout", "registry_unavailable"],
  async run({ out }, rawTargets, o) {
    const targets = rawTargets.map((t) => targetArg(t));
    const requestedSubnet = subnetOption(o.subnet);
    const ports = portsOption(o) ?? DEFAULT_PORTS;
    const logLevel = logLevelOption(o.logLevel) ?? "info";
    const subnet = requestedSubnet ?? (parseSubnet(DEFAULT_SUBNET) as { ok: true; subnet: Subnet }).subnet;
    const secure = o.secure === true;
    if (o.foreground) return startForeground(out, subnet, targets, ports, secure, logLevel);

    const dirs = gatewayDirs();
    out.progress(`using PILOT_HOME ${describeHome(dirs)}`);
    let status = await guarded(() => probe(dirs.socket));
    let spawned = false;
    if (status) {
      if (requestedSubnet && requestedSubnet.text !== status.subnet) {
        throw new CliError("already_exists", `a gateway is already running with subnet ${status.subnet} (pid ${status.pid})`, `leave out --subnet to add to it, or stop it first: pilot gateway stop`);
      }
    } else {
      if (subnetNeedsRoot(subnet)) throw cliError(notRootError(formatIPv4(subnet.network + 1)));
      await withDaemon((d) => d.info(), { timeoutMs: 3000 }).catch((e: unknown) => {
        if (e instanceof CliError && e.code === "not_running" && dirs.homeFrom === "sudo") {
          // Say where we looked: under sudo that is the invoking user's home, not root's.
          throw new CliError("not_running", `the Pilot daemon is not running (looked in ${describeHome(dirs)})`, e.hint);
        }
        throw e;
      });
      const r = await spawnGateway(subnet, logLevel, out);
      spawned = r.spawned;
      status = r;
    }
    const results: { mapping: MappingInfo; created: boolean }[] = [];
    try {
      for (const target of targets) results.push(await guarded(() => controlRequest(dirs.socket, "map", { target, ports, secure })));
    } catch (e) {
      // All or nothing: undo what this command did.
      for (const r of results) if (r.created) await controlRequest(dirs.socket, "unmap", { target: r.mapping.local_ip }).catch(() => {});
      if (spawned) await controlRequest(dirs.socket, "stop").catch(() => {});
      throw e;
    }
    out.result({ pid: status.pid, subnet: status.subnet, started: spawned, mappings: results.map((r) => brief(r.mapping)), ...homeFields(dirs) }, (d: any) => {
      const lines: string[] = d.mappings.map(activeLine);
      if (lines.length === 0) lines.push(`Gateway ${spawned ? "started" : "running"} (pid ${d.pid}, subnet ${d.subnet}), no mappings yet; add one with: pilot gateway map <agent>`);
      return lines.join("\n");
    });
    if (spawned) out.progress(`gateway running in the background (pid ${status.pid}); list with: pilot gateway list; stop with: pilot gateway stop`);
  },
};

// ---- map, unmap, list ----------------------------------------------------------------

export const gatewayMap: CommandSpec = {
  group: "gateway",
  name: "map",
  args: "<target>",
  description: "Map one more agent in the running gateway and print the local IP it got (the same IP if it is mapped already)",
  options: [
    { flags: "--ports <list>", description: `comma-separated TCP ports to forward (default ${DEFAULT_PORTS.join(",")}); added to an existing mapping's ports` },
    { flags: "--ip <address>", description: "use this local IP (inside the gateway's subnet) instead of the next free one" },
    { flags: "--secure", description: "also encrypt each connection to these ports with the secure channel (see gateway start --help); other ports of the same agent can stay plain" },
  ],
  examples: ["pilot gateway map data-analyst                  # prints 10.4.0.2", "curl http://$(pilot gateway map data-analyst)/.well-known/agent-card.json"],
  returns: {
    local_ip: "the local IP",
    pilot_addr: "the agent's Pilot address",
    hostname: "its hostname, if it has one",
    ports: "all its forwarded ports",
    secure_ports: "those of them that run the secure channel (mapped with --secure)",
    secure: "true when every port is secure",
    created: "false if it was mapped already",
  },
  errors: ["not_running", "not_found", "unauthorized", "port_in_use", "already_exists", "invalid_argument", "limit_exceeded", "registry_unavailable"],
  async run({ out }, [text], o) {
    const target = targetArg(text);
    const ports = portsOption(o) ?? DEFAULT_PORTS;
    const ip = ipv4Option(o.ip);
    const r = await guarded(() => controlRequest(gatewayDirs().socket, "map", { target, ports, secure: o.secure === true, ...(ip ? { ip } : {}) }));
    const m = brief(r.mapping);
    out.progress(`${r.created ? "mapped" : "already mapped"}: ${m.hostname ? `${m.hostname} (${m.pilot_addr})` : m.pilot_addr} -> ${m.local_ip}:${m.ports.join(",")}${secureSuffix(m, ["secure channel", "secure channel on"])}`);
    out.result({ ...m, created: r.created }, (d: any) => d.local_ip);
  },
};

export const gatewayUnmap: CommandSpec = {
  group: "gateway",
  name: "unmap",
  args: "<target>",
  description:
    "Remove a mapping, named by its local IP, hostname or address: its listeners and open connections close and its loopback alias goes; with --ports, only those ports (the agent keeps its IP)",
  options: [{ flags: "--ports <list>", description: "remove only these ports of the mapping (e.g. to map one again with or without --secure)" }],
  examples: ["pilot gateway unmap 10.4.0.2", "pilot gateway unmap data-analyst", "pilot gateway unmap data-analyst --ports 443"],
  returns: {
    local_ip: "the local IP it had",
    pilot_addr: "the agent's address",
    hostname: "its hostname",
    ports: "the ports it forwarded before this command",
    removed_ports: "the ports removed",
    remaining_ports: "the ports still mapped ([] when the mapping is gone)",
    alias_removed: "true if the gateway removed its loopback alias",
  },
  errors: ["not_running", "not_found", "invalid_argument"],
  async run({ out }, [text], o) {
    if (!text) throw new CliError("usage", "name the mapping to remove: its local IP, hostname or address", "see them with: pilot gateway list");
    const ports = portsOption(o);
    const socket = gatewayDirs().socket;
    if (ports) {
      // A gateway from before per-port mappings would ignore `ports` and remove the whole mapping.
      const status = await guarded(() => controlRequest(socket, "status"));
      if (!(Number(status.control_version) >= 2)) {
        throw new CliError("invalid_argument", `the running gateway (pid ${status.pid}) is older than this pilot and cannot remove single ports`, "restart it (pilot gateway stop, then start), or unmap the whole agent");
      }
    }
    const r = await guarded(() => controlRequest(socket, "unmap", { target: text.trim(), ...(ports ? { ports } : {}) }));
    const removed: number[] = Array.isArray(r.removed_ports) ? r.removed_ports : r.ports;
    const remaining: number[] = Array.isArray(r.remaining_ports) ? r.remaining_ports : [];
    out.result(
      { local_ip: r.local_ip, pilot_addr: r.pilot_addr, hostname: r.hostname, ports: r.ports, removed_ports: removed, remaining_ports: remaining, alias_removed: r.alias_removed },
      (d: any) =>
        d.remaining_ports.length > 0
          ? `unmapped port${d.removed_ports.length > 1 ? "s" : ""} ${d.removed_ports.join(",")} of ${d.local_ip} (${d.hostname ? `${d.hostname}, ` : ""}${d.pilot_addr}); still mapped: ${d.remaining_ports.join(",")}`
          : `unmapped ${d.local_ip} (${d.hostname ? `${d.hostname}, ` : ""}${d.pilot_addr})`,
    );
  },
};

export const gatewayList: CommandSpec = {
  group: "gateway",
  name: "list",
  description: "List the running gateway's mappings: agent address, local IP, ports, and traffic",
  examples: ["pilot gateway list", "pilot gateway list --json"],
  returns: {
    pid: "the gateway's process id",
    subnet: "its subnet",
    mappings: "one {local_ip, pilot_addr, hostname, ports, secure_ports, secure, connections, total_connections, failed_connections, bytes_up, bytes_down, mapped_at} per agent",
    total: "number of mappings",
  },
  errors: ["not_running"],
  async run({ out }) {
    const s = await guarded(() => controlRequest(gatewayDirs().socket, "status"));
    const mappings = (s.mappings as MappingInfo[]).map((m) => ({ ...m, ...brief(m) }));
    out.result({ pid: s.pid, subnet: s.subnet, mappings, total: mappings.length }, (d: any) => {
      if (d.total === 0) return `no mappings (gateway pid ${d.pid}, subnet ${d.subnet}); add one with: pilot gateway map <agent>`;
      return table(
        ["ADDRESS", "LOCAL IP", "PORTS", "HOSTNAME", "CONNS"],
        d.mappings.map((m: MappingInfo) => [m.pilot_addr, m.local_ip, m.ports.join(",") + secureSuffix(m, ["secure", "secure:"]), m.hostname, m.connections]),
      );
    });
  },
};

// ---- stop ---------------------------------------------------------------------------

export const gatewayStop: CommandSpec = {
  group: "gateway",
  name: "stop",
  description: "Stop the gateway: close its listeners and connections and remove every loopback alias it added (also cleans up after a gateway that crashed)",
  examples: ["pilot gateway stop          # no sudo needed, even for a gateway started with sudo", "pilot gateway stop --json"],
  returns: { pid: "the stopped gateway's pid (null if none was running and only leftovers were removed)", removed_aliases: "the loopback aliases removed", forced: "true if it had to be killed" },
  errors: ["not_running", "unauthorized", "timeout"],
  async run({ out }) {
    const dirs = gatewayDirs();
    const status = await guarded(() => probe(dirs.socket));
    if (status) {
      const r = await guarded(() => controlRequest(dirs.socket, "stop", {}, 60_000));
      let forced = false;
      if (!(await waitForExit(status.pid, 10_000))) {
        try {
          process.kill(status.pid, "SIGKILL");
          forced = true;
        } catch {
          throw new CliError("timeout", `the gateway (pid ${status.pid}) did not exit after stopping`, `kill it as its owner: sudo kill ${status.pid}`);
        }
      }
      if (r.failed_aliases?.length > 0) {
        throw new CliError("internal", `the gateway stopped but could not remove ${r.failed_aliases.map((f: any) => f.ip).join(", ")}`, "the next gateway start retries; or remove them with: sudo ip addr del IP/32 dev lo");
      }
      out.result({ pid: status.pid, removed_aliases: r.removed_aliases, forced }, (d: any) => `gateway stopped (pid ${d.pid})${d.removed_aliases.length > 0 ? `; removed ${d.removed_aliases.join(", ")}` : ""}`);
      return;
    }
    // None answers: a hung gateway, or leftovers of one that crashed.
    const ledger = new AliasLedger(dirs.ledger, dirs.owner);
    const previous = ledger.read();
    if (!previous) throw cliError(notRunningError());
    let forced = false;
    let killed = false;
    if (processAlive(previous.pid) && isGatewayProcess(previous.pid) && previous.pid !== process.pid) {
      killed = true;
      try {
        process.kill(previous.pid, "SIGTERM");
      } catch {
        throw new CliError("unauthorized", `the gateway (pid ${previous.pid}) does not answer and cannot be signalled by this user`, "run: sudo pilot gateway stop");
      }
      if (!(await waitForExit(previous.pid, 5000))) {
        process.kill(previous.pid, "SIGKILL");
        forced = true;
        await waitForExit(previous.pid, 2000);
      }
    }
    const r = await cleanupLeftovers(ledger);
    if (r.failed.length > 0) {
      throw new CliError(isRoot() ? "internal" : "unauthorized", `could not remove the loopback aliases a crashed gateway left: ${r.failed.map((f) => `${f.ip} (${f.error})`).join(", ")}`, isRoot() ? undefined : "run: sudo pilot gateway stop");
    }
    if (r.removed.length === 0 && !killed) {
      ledger.remove();
      throw cliError(notRunningError());
    }
    out.result(
      { pid: killed ? previous.pid : null, removed_aliases: r.removed, forced },
      (d: any) => `${killed ? `gateway stopped (pid ${d.pid}; it did not answer and was signalled)` : "no gateway was running; cleaned up after the last one"}${d.removed_aliases.length > 0 ? `; removed ${d.removed_aliases.join(", ")}` : ""}`,
    );
  },
};

export const gatewayCommands: CommandSpec[] = [gatewayStart, gatewayMap, gatewayUnmap, gatewayList, gatewayStop];
