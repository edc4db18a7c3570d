/**
 * `pilot daemon start|stop|status`. Without --foreground, `start` runs the
 * daemon as a detached child (its own session, output appended to the log
 * file) and returns only once it is registered and answering on its socket.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, statSync } from "node:fs";
import type { CommandSpec } from "../command.ts";
import { CliError, type ErrorCodeName } from "../errors.ts";
import { DEFAULT_REGISTRY, readConfig } from "../config.ts";
import { badValue, byteSizeOption, choiceOption, durationOption, logLevelOption, textOption } from "../args.ts";
import { toCliError, withDaemon } from "../daemon-client.ts";
import { pilotPaths } from "../../util/paths.ts";
import { processHoldsFile } from "../../util/pid-file.ts";
import { parseLogLevel } from "../../util/log.ts";
import { fileError, usageError } from "../errors.ts";
import { parseServiceList, SERVICE_NAMES } from "../../daemon/services/service.ts";
import { PILOT_VERSION } from "../version.ts";
import type { RotationPolicy } from "../../util/rotating-log.ts";
import { appendStartupError, logRotationFrom } from "./logs.ts";
import { METRICS_EXAMPLE, parseMetricsAddress } from "../../util/metrics-listener.ts";

const START_TIMEOUT_MS = 15_000;

interface StartSettings {
  registry: string;
  beacon: string;
  /** The rendezvous's relay over WebSocket, when UDP does not work here. */
  relayWs?: string;
  listen: string;
  hostname?: string;
  public?: boolean;
  tags?: string[];
  logLevel: string;
  logFormat: "text" | "json";
  /** Where the log goes: the home's pilot.log (rotated), or stderr. */
  logTo: "file" | "stderr";
  rotation: RotationPolicy;
  bufferBudget?: number;
  zeroWindowTimeoutMs?: number;
  disabledServices: string[];
  openServices: string[];
  /** POST local events here (--webhook, config 'webhook'); its secret is read from the config by the daemon itself, never passed on a command line. */
  webhook?: string;
  /** The local dashboard: "off", or its loopback HOST:PORT (default: 127.0.0.1, any free port). */
  dashboard?: string;
  /** The config's text, for the services (each reads its own keys; the foreground daemon reads the same config again). */
  serviceConfig: Record<string, string>;
  /** Serve Prometheus metrics here (--metrics, config 'metrics'), IP:PORT as given. */
  metrics?: string;
}

/** HOST:PORT as `daemon start` takes it; the same check the daemon makes, here so a detached start fails at once. */
async function hostPortOption(text: string, flag: string): Promise<string> {
  const { parseHostPort, parseRegistryList, DaemonStartError } = await import("../../daemon/run.ts");
  try {
    if (flag === "--registry" || flag === "--beacon") parseRegistryList(text, flag);
    else parseHostPort(text, flag);
  } catch (e) {
    if (e instanceof DaemonStartError) throw badValue(e.message, `for example: ${flag} ${flag === "--listen" ? "0.0.0.0:4000" : "127.0.0.1:9000"}`);
    throw e;
  }
  return text;
}

/** --dashboard / config 'dashboard': "off", or a loopback HOST:PORT (checked here so a detached start fails at once). */
async function dashboardOption(text: string | undefined): Promise<string | undefined> {
  if (text === undefined || text === "") return undefined;
  if (text === "off") return text;
  const { parseHostPort } = await import("../../daemon/run.ts");
  const { isLoopbackHost } = await import("../../util/web-page.ts");
  await hostPortOption(text, "--dashboard");
  if (!isLoopbackHost(parseHostPort(text, "--dashboard").host)) throw badValue(`--dashboard "${text}": the dashboard listens on loopback only`, "for example: --dashboard 127.0.0.1:8484, or --dashboard off");
  return text;
}

export async function settingsFrom(o: Record<string, any>): Promise<StartSettings> {
  const config = readConfig();
  const { checkHostname, checkTags } = await import("../../registry/rules.ts");
  const registry = await hostPortOption(String(textOption(o, "registry") ?? (process.env.PILOT_REGISTRY || undefined) ?? config.registry ?? DEFAULT_REGISTRY), "--registry");
  const registryHost = registry.slice(0, registry.lastIndexOf(":")) || "127.0.0.1";
  const beaconText = String(textOption(o, "beacon") ?? (process.env.PILOT_BEACON || undefined) ?? config.beacon ?? `${registryHost}:9001`);
  const beacon = beaconText === "off" ? beaconText : await hostPortOption(beaconText, "--beacon");
  const relayWsText = textOption(o, "relayWs") ?? (process.env.PILOT_RELAY_WS || undefined) ?? config.relay_ws;
  let relayWs: string | undefined;
  if (relayWsText !== undefined && relayWsText !== "" && relayWsText !== "off") {
    const { relayWsUrl } = await import("../../daemon/ws-relay-path.ts");
    try {
      relayWs = relayWsUrl(relayWsText).href;
    } catch (e) {
      throw badValue(`--relay-ws: ${(e as Error).message}`, "for example: --relay-ws wss://rendezvous.example.com (or ws://HOST:PORT behind a TLS-terminating load balancer)");
    }
  }
  const listen = await hostPortOption(String(textOption(o, "listen") ?? config.listen ?? "[::]:0"), "--listen");
  const hostnameText = textOption(o, "hostname") ?? config.hostname;
  let hostname: string | undefined;
  if (hostnameText !== undefined && hostnameText !== "") {
    const c = checkHostname(hostnameText);
    if (!c.ok) throw badValue(c.message, "for example: --hostname agent-a");
    hostname = c.value;
  }
  const isPublic = o.public === true ? true : config.public === "true" ? true : undefined;
  const tagsText = textOption(o, "tags") ?? config.tags;
  let tags: string[] | undefined;
  if (tagsText) {
    const c = checkTags(tagsText.split(",").map((t) => t.trim()).filter(Boolean));
    if (!c.ok) throw badValue(c.message, "for example: --tags nlp,analysis");
    tags = c.value;
  }
  const logLevel = logLevelOption(o.logLevel) ?? parseLogLevel(config.log_level) ?? "info";
  const logFormat = choiceOption(o.logFormat, "--log-format", ["text", "json"] as const) ?? "text";
  const logTo = choiceOption(o.logTo, "--log-to", ["file", "stderr"] as const) ?? (o.foreground ? "stderr" : "file");
  const rotation = logRotationFrom(config);
  const bufferBudget = byteSizeOption(o.bufferBudget ?? config.buffer_budget, "--buffer-budget", { min: 1 << 20, max: 64 * 2 ** 30 });
  const { disabledServices, openServices } = serviceSettingsFrom(o, config);
  const serviceConfig = await serviceConfigFrom(config);
  const zeroWindowTimeoutMs = durationOption(o.zeroWindowTimeout ?? config.zero_window_timeout, "--zero-window-timeout", { maxMs: 24 * 3_600_000 });
  const dashboard = await dashboardOption(textOption(o, "dashboard") ?? config.dashboard);
  const webhookText = textOption(o, "webhook") ?? config.webhook;
  let webhook: string | undefined;
  if (webhookText !== undefined && webhookText !== "") {
    const { checkWebhookUrl } = await import("../../daemon/webhooks.ts");
    const c = checkWebhookUrl(webhookText);
    if (!c.ok) throw badValue(`${textOption(o, "webhook") !== undefined ? "--webhook" : "webhook (config)"}: ${c.message}`, "for example: --webhook https://hooks.example.com/pilot");
    webhook = c.url;
  }
  const metrics = metricsOption(textOption(o, "metrics"), config.metrics);
  return {
    registry,
    beacon,
    ...(relayWs ? { relayWs } : {}),
    listen,
    ...(dashboard ? { dashboard } : {}),
    ...(hostname ? { hostname } : {}),
    ...(isPublic ? { public: true } : {}),
    ...(tags?.length ? { tags } : {}),
    logLevel,
    logFormat,
    logTo,
    rotation,
    ...(bufferBudget !== undefined ? { bufferBudget } : {}),
    ...(zeroWindowTimeoutMs !== undefined ? { zeroWindowTimeoutMs } : {}),
    disabledServices,
    openServices,
    ...(webhook ? { webhook } : {}),
    serviceConfig,
    ...(metrics ? { metrics } : {}),
  };
}

/** --metrics IP:PORT (or 'off', over the config's 'metrics'); undefined: no metrics listener. */
function metricsOption(flag: string | undefined, configured: string | undefined): string | undefined {
  const text = flag ?? configured;
  if (text === undefined || text === "" || text === "off") return undefined;
  try {
    parseMetricsAddress(text);
  } catch (e) {
    throw badValue(`${flag !== undefined ? "--metrics" : "metrics (config)"}: ${(e as Error).message}`, `for example: --metrics ${METRICS_EXAMPLE} (loopback: only this machine can scrape)`);
  }
  return text.trim();
}

/**
 * The config's text for the services (each reads its own keys), checked here with
 * the services' own parsers so that a bad value stops `daemon start` at once.
 */
async function serviceConfigFrom(config: Record<string, string | undefined>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(config)) if (value !== undefined) out[key] = value;
  const { exchangeLimits } = await import("../../daemon/services/exchange/limits.ts");
  const { pubsubLimitsFrom, pubsubSettingsOf } = await import("../../daemon/services/pubsub/limits.ts");
  try {
    exchangeLimits(out);
    pubsubLimitsFrom(pubsubSettingsOf(out));
  } catch (e) {
    throw fileError(`config: ${(e as Error).message}`, "fix it with: pilot config --set KEY=VALUE (or --unset KEY)");
  }
  return out;
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
 * daemon may have died and its pid been reused by an unrelated process, or by
 * another home's daemon). It is ours if its socket answers (with its real pid),
 * or, while the socket is silent, if the process is a `pilot daemon` that holds
 * this home's pid file open (Linux /proc; see util/pid-file.ts). Anything else is
 * a stale file, never trusted with a signal.
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
    if (!argv.includes("daemon") || !argv.includes("--foreground")) return null;
  } catch {
    return null; // gone, or no /proc: a pid that does not answer is not trusted with a signal
  }
  return processHoldsFile(pid, pidFile) ? { pid, answering: false } : null;
}

/** Re-runs this executable (compiled) or this script (from source) with `args`. */
export function selfCommand(args: string[]): string[] {
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

/** The CLI's error code for each DaemonStartError code (anything else is internal). */
const START_ERROR_CODES: Record<string, ErrorCodeName> = {
  already_exists: "already_exists",
  registry_unreachable: "registry_unavailable",
  rate_limited: "rate_limited",
  invalid_argument: "invalid_argument",
  registry_identity_changed: "unauthorized",
};

/**
 * Why a detached daemon exited during start-up: the error envelope it wrote
 * (it runs with --json, its output appended to the log), else the log's last
 * error line and the log's path.
 */
function startFailure(log: string, exitCode: number, logFile: string): CliError {
  const lines = log.trimEnd().split("\n");
  const envelope = lines.findLast((l) => l.startsWith('{"status":"error"'));
  if (envelope) {
    try {
      const e = JSON.parse(envelope);
      if (typeof e.code === "string" && typeof e.message === "string") return new CliError(e.code, e.message, typeof e.hint === "string" ? e.hint : undefined);
    } catch {
      // not ours after all: fall through
    }
  }
  const last = lines.filter((l) => l.includes("error:")).pop() ?? lines.pop() ?? "";
  return new CliError("internal", `the daemon exited during start-up (code ${exitCode}): ${last.replace(/^error:\s*/, "")}`, `see the log: ${logFile}`);
}

async function runForeground(s: StartSettings, out: { json: boolean; result: (d: unknown, t?: any) => void }): Promise<void> {
  const { startDaemon, parseHostPort, parseRegistryList, DaemonStartError } = await import("../../daemon/run.ts");
  let daemon;
  try {
    const [registry, ...registryAlternates] = parseRegistryList(s.registry, "--registry");
    daemon = await startDaemon({
      registry: registry!,
      registryAlternates,
      ...beaconOptions(s.beacon, parseRegistryList),
      relayWs: s.relayWs ?? null,
      listen: parseHostPort(s.listen, "--listen"),
      hostname: s.hostname,
      public: s.public,
      tags: s.tags,
      logLevel: parseLogLevel(s.logLevel),
      logFormat: s.logFormat,
      ...(s.logTo === "file" ? { logFile: { path: pilotPaths().logFile, rotation: s.rotation } } : {}),
      bufferBudget: s.bufferBudget,
      ...(s.dashboard ? { dashboard: s.dashboard === "off" ? null : parseHostPort(s.dashboard, "--dashboard") } : {}),
      services: { disabled: parseServiceList(s.disabledServices.join(",")), open: parseServiceList(s.openServices.join(",")), config: s.serviceConfig },
      streamConfig: s.zeroWindowTimeoutMs !== undefined ? { zeroWindowTimeout: s.zeroWindowTimeoutMs } : undefined,
      webhook: s.webhook ? { url: s.webhook, secret: readConfig().webhook_secret, userAgent: `pilot/${PILOT_VERSION}` } : undefined,
      metrics: s.metrics ? parseMetricsAddress(s.metrics) : undefined,
    });
  } catch (e) {
    if (e instanceof DaemonStartError) throw new CliError(START_ERROR_CODES[e.code] ?? "internal", e.message, e.hint);
    throw e;
  }
  const info = (await daemon.node.call("info", {})) as Record<string, unknown>;
  out.result(
    { pid: process.pid, node_id: info.node_id, address: info.address, hostname: info.hostname, socket: daemon.socketPath, endpoint: daemon.endpoint, metrics: daemon.metricsUrl, foreground: true },
    (d: any) => `Daemon running in the foreground (pid ${d.pid})\n  Address:  ${d.address}${d.hostname ? `\n  Hostname: ${d.hostname}` : ""}\n  Socket:   ${d.socket}\n  Tunnel:   udp ${d.endpoint}${d.metrics ? `\n  Metrics:  ${d.metrics}` : ""}`,
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
    { flags: "--registry <host:port>", description: "registry to register with, or several of one deployment A:9000,B:9000 to fail over between (env PILOT_REGISTRY, config 'registry'; default 127.0.0.1:9000)" },
    { flags: "--beacon <host:port>", description: "beacon for endpoint discovery and relay, or several of one deployment (a:9001,b:9001: fails over between them), or 'off' (default: registry host, port 9001)" },
    { flags: "--relay-ws <url>", description: "the rendezvous's relay over WebSocket (wss://HOST[:PORT]), used on its own when UDP does not work here (env PILOT_RELAY_WS, config 'relay_ws'; HTTPS_PROXY is honoured)" },
    { flags: "--listen <host:port>", description: "UDP address of the tunnel socket (default [::]:0: any free port, IPv4 and IPv6)" },
    { flags: "--hostname <name>", description: "claim this hostname (fails if another node has it)" },
    { flags: "--public", description: "make this node visible to everyone (default: private, visible only to trusted nodes)" },
    { flags: "--tags <list>", description: "comma-separated tags, e.g. nlp,analysis" },
    { flags: "--dashboard <host:port>", description: "the local dashboard's loopback address (default 127.0.0.1, any free port; config 'dashboard'), or 'off'; pilot dashboard prints its URL" },
    { flags: "--foreground", description: "run in this process (for systemd, containers and tests); stop with Ctrl-C or SIGTERM" },
    { flags: "--log-level <level>", description: "debug, info, warn or error (default info)" },
    { flags: "--log-format <format>", description: "text or json (default text)" },
    { flags: "--log-to <where>", description: "file ($PILOT_HOME/pilot.log, rotated at 10MiB, 3 old files kept: config log_max_size, log_keep) or stderr; default: file, and stderr with --foreground" },
    { flags: "--no-messages", description: "do not run the message service (port 1001; pilot send-message, inbox)" },
    { flags: "--no-files", description: "do not accept files (port 1001; pilot send-file, received)" },
    { flags: "--no-pubsub", description: "do not run the pub/sub broker (port 1002; pilot publish, subscribe)" },
    { flags: "--no-tasks", description: "do not take tasks from other agents (port 1003; pilot task ...)" },
    { flags: "--open-services <list>", description: "services that also accept untrusted nodes (default none), e.g. pubsub" },
    { flags: "--buffer-budget <size>", description: "memory for all stream buffers together (default 64MiB; one trusted peer gets at most a quarter, strangers together a quarter)" },
    { flags: "--zero-window-timeout <duration>", description: "close a stream whose peer stops reading our data for this long (default 120s)" },
    { flags: "--metrics <ip:port>", description: "serve Prometheus metrics at http://IP:PORT/metrics, e.g. 127.0.0.1:9100 (config 'metrics'; 'off' for none; default none)" },
    { flags: "--webhook <url>", description: "POST every local event as signed JSON to this http(s) URL (config 'webhook'; secret: config 'webhook_secret' or $PILOT_HOME/webhook_secret)" },
  ],
  examples: ["pilot daemon start --hostname agent-a", "pilot daemon start --registry 203.0.113.5:9000 --public --tags nlp"],
  returns: { pid: "daemon process id", node_id: "this node's id", address: "this node's Pilot address", hostname: "claimed hostname or null", socket: "IPC socket path", log_file: "where the daemon logs", metrics: "the metrics listener's address (IP:PORT, the port it bound), or null" },
  errors: ["already_exists", "registry_unavailable", "rate_limited", "unauthorized", "timeout", "invalid_argument"],
  async run({ out }, _args, o) {
    if (o.foreground) {
      try {
        return await runForeground(await settingsFrom(o), out);
      } catch (e) {
        // With --log-to file (a service), a start-up failure belongs in the log as well as on stderr.
        if (o.logTo === "file") appendStartupError(pilotPaths().logFile, e, o.logFormat === "json" ? "json" : "text");
        throw e;
      }
    }
    const s = await settingsFrom(o);
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
    // --json: a start-up failure reaches the log as one envelope, which is read back below.
    const args = ["daemon", "start", "--foreground", "--json", "--registry", s.registry, "--beacon", s.beacon, "--listen", s.listen, "--log-level", s.logLevel, "--log-format", s.logFormat, "--log-to", s.logTo];
    if (s.relayWs) args.push("--relay-ws", s.relayWs);
    if (s.hostname) args.push("--hostname", s.hostname);
    if (s.public) args.push("--public");
    if (s.tags) args.push("--tags", s.tags.join(","));
    if (s.bufferBudget !== undefined) args.push("--buffer-budget", String(s.bufferBudget));
    for (const name of s.disabledServices) args.push(`--no-${name}`);
    if (s.openServices.length > 0) args.push("--open-services", s.openServices.join(","));
    if (s.zeroWindowTimeoutMs !== undefined) args.push("--zero-window-timeout", `${s.zeroWindowTimeoutMs}ms`);
    if (s.dashboard) args.push("--dashboard", s.dashboard);
    // Only a URL given as a flag goes on the child's command line; one from the config the child reads itself.
    if (textOption(o, "webhook") !== undefined && s.webhook) args.push("--webhook", s.webhook);
    args.push("--metrics", s.metrics ?? "off");
    const [cmd, ...cmdArgs] = selfCommand(args);
    const child = spawn(cmd!, cmdArgs, { detached: true, stdio: ["ignore", logFd, logFd], env: { ...process.env, PILOT_HOME: paths.home } });
    closeSync(logFd);
    const exited = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? 1)));
    child.unref();
    // Say what is happening only if it takes a while (a registry far away): a quick start or failure is one message.
    const slow = setTimeout(() => out.progress(`starting daemon (pid ${child.pid})...`), 1000);
    let info;
    try {
      info = await waitForStart(child.pid!, exited, paths.logFile, logStart);
    } finally {
      clearTimeout(slow);
    }
    // The address the listener bound (with port 0 the kernel picks one), as the daemon reports it.
    const metrics = s.metrics ? await boundMetricsAddress(s.metrics) : null;
    out.result(
      { pid: child.pid, node_id: info.node_id, address: info.address, hostname: info.hostname, socket: paths.socket, log_file: paths.logFile, metrics },
      (d: any) => `Daemon running (pid ${d.pid})\n  Address:  ${d.address}${d.hostname ? `\n  Hostname: ${d.hostname}` : ""}\n  Socket:   ${d.socket}\n  Logs:     ${d.log_file}${d.metrics ? `\n  Metrics:  http://${d.metrics}/metrics` : ""}`,
    );
  },
};

/** What the log gained since it was `start` bytes long (all of it, if it was rotated meanwhile). */
function logSince(logFile: string, start: number): string {
  const text = readFileSync(logFile);
  return (text.length >= start ? text.subarray(start) : text).toString("utf8");
}

/** IP:PORT of the running daemon's metrics listener; what was asked for if the daemon cannot say. */
async function boundMetricsAddress(asked: string): Promise<string> {
  try {
    const { url } = (await withDaemon((d) => d.call("metrics"), { timeoutMs: 2000 })) as { url: string };
    return new URL(url).host;
  } catch {
    return asked;
  }
}

/** Waits until the detached daemon `pid` answers on its socket; throws what it said if it exits first. */
async function waitForStart(pid: number, exited: Promise<number>, logFile: string, logStart: number) {
  let exitCode: number | null = null;
  void exited.then((code) => (exitCode = code));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exitCode !== null) throw startFailure(logSince(logFile, logStart), exitCode, logFile);
    try {
      const info = await withDaemon((d) => d.info(), { timeoutMs: 500 });
      if (info.pid === pid) return info;
    } catch {
      // not ready yet
    }
    await Promise.race([Bun.sleep(100), exited]);
  }
  throw new CliError("timeout", `the daemon (pid ${pid}) did not become ready within ${START_TIMEOUT_MS / 1000} s`, `check the log: tail ${logFile}`);
}

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

/** --beacon: "off", or one or more HOST:PORT (the first, then the ones the daemon fails over to). */
function beaconOptions(text: string, parseList: (text: string, what: string) => { host: string; port: number }[]) {
  if (text === "off") return { beacon: null };
  const [beacon, ...beaconAlternates] = parseList(text, "--beacon");
  return { beacon: beacon!, beaconAlternates };
}
