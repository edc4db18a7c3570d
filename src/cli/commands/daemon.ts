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
  return {
    registry,
    beacon,
    listen,
    ...(hostname ? { hostname } : {}),
    ...(isPublic ? { public: true } : {}),
    ...(tagsText ? { tags: tagsText.split(",").map((t) => t.trim()).filter(Boolean) } : {}),
    logLevel,
    logFormat,
  };
}

/** The `{"status":"error",...}` envelope a --json child wrote, if `line` is one. */
function errorEnvelope(line: string): { code: string; message: string; hint?: string } | undefined {
  try {
    const e = JSON.parse(line);
    return e?.status === "error" && typeof e.code === "string" && typeof e.message === "string" ? { code: e.code, message: e.message, hint: typeof e.hint === "string" ? e.hint : undefined } : undefined;
  } catch {
    return undefined;
  }
}

function alivePid(pidFile: string): number | null {
  try {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return null;
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
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
  ],
  examples: ["pilot daemon start --hostname agent-a", "pilot daemon start --registry 203.0.113.5:9000 --public --tags nlp"],
  returns: { pid: "daemon process id", node_id: "this node's id", address: "this node's Pilot address", hostname: "claimed hostname or null", socket: "IPC socket path", log_file: "where the daemon logs" },
  errors: ["already_exists", "connection_failed", "timeout", "invalid_argument"],
  async run({ out }, _args, o) {
    const s = settingsFrom(o);
    if (o.foreground) return runForeground(s, out);
    const paths = pilotPaths();
    const running = alivePid(paths.pidFile);
    if (running) throw new CliError("already_exists", `the daemon is already running (pid ${running})`, "stop it first with: pilot daemon stop");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(paths.home, { recursive: true, mode: 0o700 });
    const logFd = openSync(paths.logFile, "a", 0o600);
    const logStart = statSync(paths.logFile).size;
    // --json: a start-up failure reaches the log as an error envelope, whose code is reported below.
    const args = ["daemon", "start", "--foreground", "--json", "--registry", s.registry, "--beacon", s.beacon, "--listen", s.listen, "--log-level", s.logLevel, "--log-format", s.logFormat];
    if (s.hostname) args.push("--hostname", s.hostname);
    if (s.public) args.push("--public");
    if (s.tags) args.push("--tags", s.tags.join(","));
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
        const envelope = errorEnvelope(last);
        if (envelope && (daemonStart.errors as string[]).includes(envelope.code)) {
          throw new CliError(envelope.code as any, envelope.message, envelope.hint ?? `see the log: ${paths.logFile}`);
        }
        throw new CliError("internal", `the daemon exited during start-up (code ${exited}): ${envelope?.message ?? last.replace(/^error:\s*/, "")}`, `see the log: ${paths.logFile}`);
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
    const pid = alivePid(paths.pidFile);
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
