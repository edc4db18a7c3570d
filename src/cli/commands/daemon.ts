/**
 * `pilot daemon start|stop|status`. Without --foreground, `start` runs the
 * daemon as a detached child (its own session, output appended to the log
 * file) and returns only once it is registered and answering on its socket.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, statSync } from "node:fs";
import type { CommandSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { DEFAULT_REGISTRY, readConfig } from "../config.ts";
import { toCliError, withDaemon } from "../daemon-client.ts";
import { pilotPaths } from "../../util/paths.ts";
import { parseLogLevel } from "../../util/log.ts";
import { byteSizeOption, durationOption } from "../args.ts";
import { usageError } from "../errors.ts";
import { parseServiceList, SERVICE_NAMES } from "../../daemon/services/service.ts";

const START_TIMEOUT_MS = 15_000;

interface StartSettings {
  registry: string;
  beacon: string;
  listen: string;
  hostname?: string;
  public?: boolean;
  tags?: string[];
  logLevel: string;
  logFormat: "text" | "json";
  bufferBudget?: number;
  zeroWindowTimeoutMs?: number;
  disabledServices: string[];
  openServices: string[];
}

function settingsFrom(o: Record<string, any>): StartSettings {
  const config = readConfig();
  const registry = String(o.registry ?? process.env.PILOT_REGISTRY ?? config.registry ?? DEFAULT_REGISTRY);
  const registryHost = registry.slice(0, registry.lastIndexOf(":")) || "127.0.0.1";
  const beacon = String(o.beacon ?? process.env.PILOT_BEACON ?? config.beacon ?? `${registryHost}:9001`);
  const listen = String(o.listen ?? config.listen ?? "0.0.0.0:0");
  const hostname = o.hostname !== undefined ? String(o.hostname) : config.hostname;
  const isPublic = o.public === true ? true : config.public === "true" ? true : undefined;
  const tagsText = o.tags !== undefined ? String(o.tags) : config.tags;
  const logLevel = String(o.logLevel ?? config.log_level ?? "info");
  if (!parseLogLevel(logLevel)) throw new CliError("invalid_argument", `--log-level must be debug, info, warn or error`);
  const logFormat = o.logFormat === "json" ? "json" : "text";
  const bufferBudget = byteSizeOption(o.bufferBudget ?? config.buffer_budget, "--buffer-budget", { min: 1 << 20, max: 64 * 2 ** 30 });
  const { disabledServices, openServices } = serviceSettingsFrom(o, config);
  const zeroWindowTimeoutMs = durationOption(o.zeroWindowTimeout ?? config.zero_window_timeout, "--zero-window-timeout", { maxMs: 24 * 3_600_000 });
  return {
    registry,
    beacon,
    listen,
    ...(hostname ? { hostname } : {}),
    ...(isPublic ? { public: true } : {}),
    ...(tagsText ? { tags: tagsText.split(",").map((t) => t.trim()).filter(Boolean) } : {}),
    logLevel,
    logFormat,
    ...(bufferBudget !== undefined ? { bufferBudget } : {}),
    ...(zeroWindowTimeoutMs !== undefined ? { zeroWindowTimeoutMs } : {}),
    disabledServices,
    openServices,
  };
}

/** --no-<service> flags and --open-services over the config's disabled_services / open_services. */
function serviceSettingsFrom(o: Record<string, any>, config: Record<string, string | undefined>): { disabledServices: string[]; openServices: string[] } {
  const parse = (text: string, what: string) => {
    try {
      return parseServiceList(text);
    } catch (e) {
      throw usageError(`${what}: ${(e as Error).message}`, `for example: ${what} files`);
    }
  };
  const disabled = parse(config.disabled_services ?? "", "disabled_services");
  for (const name of SERVICE_NAMES) if (o[name] === false) disabled.add(name);
  const open = o.openServices !== undefined ? parse(String(o.openServices), "--open-services") : parse(config.open_services ?? "", "open_services");
  return { disabledServices: [...disabled], openServices: [...open] };
}

/**
 * The pid of this home's daemon, verified: a pid file alone proves nothing (the
 * daemon may have died and its pid been reused by an unrelated process). It is
 * ours if its socket answers (with its real pid), or, while the socket is silent, if
 * the process is a `pilot daemon` (Linux /proc). Anything else is a stale file.
 */
async function homeDaemonPid(pidFile: string): Promise<{ pid: number; answering: boolean } | null> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return null;
    process.kill(pid, 0);
  } catch {
    return null;
  }
  try {
    // Whoever answers on this home's socket is this home's daemon, whatever the file says.
    const info = await withDaemon((d) => d.info(), { timeoutMs: 1000 });
    if (typeof info.pid === "number" && Number.isInteger(info.pid)) return { pid: info.pid, answering: true };
  } catch {
    // not answering: look at the process itself
  }
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return argv.includes("daemon") && argv.includes("--foreground") ? { pid, answering: false } : null;
  } catch {
    return null; // gone, or no /proc: a pid that does not answer is not trusted with a signal
  }
}

/** Re-runs this executable (compiled) or this script (from source) with `args`. */
function selfCommand(args: string[]): string[] {
  const script = process.argv[1] ?? "";
  const compiled = script.startsWith("/$bunfs/") || script === process.execPath;
  return compiled ? [process.execPath, ...args] : [process.execPath, script, ...args];
}

function tail(path: string, lines = 12): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

async function runForeground(s: StartSettings, out: { json: boolean; result: (d: unknown, t?: any) => void }): Promise<void> {
  const { startDaemon, parseHostPort, DaemonStartError } = await import("../../daemon/run.ts");
  let daemon;
  try {
    daemon = await startDaemon({
      registry: parseHostPort(s.registry, "--registry"),
      beacon: s.beacon === "off" ? null : parseHostPort(s.beacon, "--beacon"),
      listen: parseHostPort(s.listen, "--listen"),
      hostname: s.hostname,
      public: s.public,
      tags: s.tags,
      logLevel: parseLogLevel(s.logLevel),
      logFormat: s.logFormat,
      bufferBudget: s.bufferBudget,
      services: { disabled: parseServiceList(s.disabledServices.join(",")), open: parseServiceList(s.openServices.join(",")) },
      streamConfig: s.zeroWindowTimeoutMs !== undefined ? { zeroWindowTimeout: s.zeroWindowTimeoutMs } : undefined,
    });
  } catch (e) {
    if (e instanceof DaemonStartError) throw new CliError(e.code === "already_exists" ? "already_exists" : e.code === "registry_unreachable" ? "connection_failed" : e.code === "invalid_argument" ? "invalid_argument" : "internal", e.message, e.hint);
    throw e;
  }
  const info = (await daemon.node.call("info", {})) as Record<string, unknown>;
  out.result(
    { pid: process.pid, node_id: info.node_id, address: info.address, hostname: info.hostname, socket: daemon.socketPath, endpoint: daemon.endpoint, foreground: true },
    (d: any) => `Daemon running in the foreground (pid ${d.pid})\n  Address:  ${d.address}${d.hostname ? `\n  Hostname: ${d.hostname}` : ""}\n  Socket:   ${d.socket}\n  Tunnel:   udp ${d.endpoint}`,
  );
  const stop = (signal: string) => void daemon.stop(signal);
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  await daemon.stopped;
  // Everything is closed and logged; do not wait for stray timers to drain.
  process.exit(0);
}

export const daemonStart: CommandSpec = {
  group: "daemon",
  name: "start",
  description: "Start the Pilot daemon (registers this node and opens its encrypted tunnel)",
  options: [
    { flags: "--registry <host:port>", description: "registry to register with (env PILOT_REGISTRY, config 'registry'; default 127.0.0.1:9000)" },
    { flags: "--beacon <host:port>", description: "beacon for endpoint discovery, or 'off' (default: registry host, port 9001)" },
    { flags: "--listen <host:port>", description: "UDP address of the tunnel socket (default 0.0.0.0:0: any free port)" },
    { flags: "--hostname <name>", description: "claim this hostname (fails if another node has it)" },
    { flags: "--public", description: "make this node visible to everyone (default: private, visible only to trusted nodes)" },
    { flags: "--tags <list>", description: "comma-separated tags, e.g. nlp,analysis" },
    { flags: "--foreground", description: "run in this process (for systemd, containers and tests); stop with Ctrl-C or SIGTERM" },
    { flags: "--log-level <level>", description: "debug, info, warn or error (default info)" },
    { flags: "--log-format <format>", description: "text or json (default text)" },
    { flags: "--no-messages", description: "do not run the message service (port 1001; pilot send-message, inbox)" },
    { flags: "--no-files", description: "do not accept files (port 1001; pilot send-file, received)" },
    { flags: "--no-pubsub", description: "do not run the pub/sub broker (port 1002; pilot publish, subscribe)" },
    { flags: "--open-services <list>", description: "services that also accept untrusted nodes (default none), e.g. pubsub" },
    { flags: "--buffer-budget <size>", description: "memory for all stream buffers together (default 64MiB; one trusted peer gets at most a quarter, strangers together a quarter)" },
    { flags: "--zero-window-timeout <duration>", description: "close a stream whose peer stops reading our data for this long (default 120s)" },
  ],
  examples: ["pilot daemon start --hostname agent-a", "pilot daemon start --registry 203.0.113.5:9000 --public --tags nlp"],
  returns: { pid: "daemon process id", node_id: "this node's id", address: "this node's Pilot address", hostname: "claimed hostname or null", socket: "IPC socket path", log_file: "where the daemon logs" },
  errors: ["already_exists", "connection_failed", "timeout", "invalid_argument"],
  async run({ out }, _args, o) {
    const s = settingsFrom(o);
    if (o.foreground) return runForeground(s, out);
    const paths = pilotPaths();
    const running = await homeDaemonPid(paths.pidFile);
    if (running) {
      throw new CliError(
        "already_exists",
        running.answering ? `the daemon is already running (pid ${running.pid})` : `a daemon process (pid ${running.pid}) holds this home but does not answer on ${paths.socket}`,
        "stop it first with: pilot daemon stop",
      );
    }
    const { mkdirSync } = await import("node:fs");
    mkdirSync(paths.home, { recursive: true, mode: 0o700 });
    const logFd = openSync(paths.logFile, "a", 0o600);
    const logStart = statSync(paths.logFile).size;
    const args = ["daemon", "start", "--foreground", "--registry", s.registry, "--beacon", s.beacon, "--listen", s.listen, "--log-level", s.logLevel, "--log-format", s.logFormat];
    if (s.hostname) args.push("--hostname", s.hostname);
    if (s.public) args.push("--public");
    if (s.tags) args.push("--tags", s.tags.join(","));
    if (s.bufferBudget !== undefined) args.push("--buffer-budget", String(s.bufferBudget));
    for (const name of s.disabledServices) args.push(`--no-${name}`);
    if (s.openServices.length > 0) args.push("--open-services", s.openServices.join(","));
    if (s.zeroWindowTimeoutMs !== undefined) args.push("--zero-window-timeout", `${s.zeroWindowTimeoutMs}ms`);
    const [cmd, ...cmdArgs] = selfCommand(args);
    const child = spawn(cmd!, cmdArgs, { detached: true, stdio: ["ignore", logFd, logFd], env: { ...process.env, PILOT_HOME: paths.home } });
    closeSync(logFd);
    let exited: number | null = null;
    child.on("exit", (code) => (exited = code ?? 1));
    child.unref();
    out.progress(`starting daemon (pid ${child.pid})...`);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exited !== null) {
        const log = readFileSync(paths.logFile, "utf8").slice(logStart).trimEnd();
        const last = log.split("\n").filter((l) => l.includes("error:") || l.includes("\"status\":\"error\"")).pop() ?? log.split("\n").pop() ?? "";
        throw new CliError("internal", `the daemon exited during start-up (code ${exited}): ${last.replace(/^error:\s*/, "")}`, `see the log: ${paths.logFile}`);
      }
      try {
        const info = await withDaemon((d) => d.info(), { timeoutMs: 500 });
        if (info.pid === child.pid) {
          out.result(
            { pid: child.pid, node_id: info.node_id, address: info.address, hostname: info.hostname, socket: paths.socket, log_file: paths.logFile },
            (d: any) => `Daemon running (pid ${d.pid})\n  Address:  ${d.address}${d.hostname ? `\n  Hostname: ${d.hostname}` : ""}\n  Socket:   ${d.socket}\n  Logs:     ${d.log_file}`,
          );
          return;
        }
      } catch {
        // not ready yet
      }
      await Bun.sleep(100);
    }
    throw new CliError("timeout", `the daemon (pid ${child.pid}) did not become ready within ${START_TIMEOUT_MS / 1000} s`, `check the log: tail ${paths.logFile}`);
  },
};

export const daemonStop: CommandSpec = {
  group: "daemon",
  name: "stop",
  description: "Stop the daemon gracefully (connections get a FIN, the node stays registered)",
  returns: { pid: "the stopped daemon's pid", forced: "true if it had to be killed" },
  errors: ["not_running"],
  async run({ out }) {
    const paths = pilotPaths();
    const pid = (await homeDaemonPid(paths.pidFile))?.pid;
    if (!pid) {
      throw new CliError("not_running", "the Pilot daemon is not running", existsSync(paths.socket) ? `a socket exists at ${paths.socket}; if no daemon uses it, it is replaced at the next start` : "start it with: pilot daemon start");
    }
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      await Bun.sleep(50);
      try {
        process.kill(pid, 0);
      } catch {
        out.result({ pid, forced: false }, `daemon stopped (pid ${pid})`);
        return;
      }
    }
    process.kill(pid, "SIGKILL");
    out.result({ pid, forced: true }, `daemon did not stop in 10 s and was killed (pid ${pid})`);
  },
};

export const daemonStatus: CommandSpec = {
  group: "daemon",
  name: "status",
  description: "Show whether the daemon runs and answers (--check: exit code only, for scripts)",
  options: [{ flags: "--check", description: "print nothing; exit 0 if the daemon answers, 1 if not" }],
  returns: { running: "true if the daemon answers", pid: "its pid", address: "its address", hostname: "its hostname", uptime_secs: "seconds since start", peers: "tunnel peers", connections: "open streams", socket: "IPC socket path" },
  errors: ["not_running"],
  async run({ out }, _args, o) {
    const paths = pilotPaths();
    try {
      const info = await withDaemon((d) => d.info(), { timeoutMs: 2000 });
      if (o.check) return;
      out.result(
        { running: true, pid: info.pid, node_id: info.node_id, address: info.address, hostname: info.hostname, uptime_secs: info.uptime_secs, peers: info.peers, connections: info.connections, registry_connected: info.registry_connected, socket: paths.socket },
        (d: any) => `Daemon: running (pid ${d.pid})\n  Address:     ${d.address}\n  Hostname:    ${d.hostname ?? "-"}\n  Uptime:      ${d.uptime_secs} s\n  Peers:       ${d.peers}\n  Connections: ${d.connections}\n  Registry:    ${d.registry_connected ? "connected" : "unreachable (retrying)"}`,
      );
    } catch (e) {
      const err = toCliError(e);
      if (o.check) err.silent = true;
      throw err;
    }
  },
};
