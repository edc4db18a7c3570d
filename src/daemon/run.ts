/**
 * Starting and stopping a daemon process: the order of start-up, the
 * registry session's upkeep (heartbeat, endpoint discovery), the pid file,
 * and a graceful stop. `startDaemon` resolves once the daemon is registered
 * and its IPC socket accepts clients; it rejects with a DaemonStartError that
 * says what went wrong and what to do.
 *
 * Start-up: state directory -> identity -> trust mirror -> UDP socket ->
 * registry (pinned key) -> register (endpoint, hostname, visibility) ->
 * data plane -> subscribe + trust sync -> exposed ports -> IPC socket -> pid file.
 * With `logFile`, the daemon owns its log: opened (rotating) before anything
 * else, closed once the daemon has stopped or failed to start.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { networkInterfaces } from "node:os";
import { BeaconClient } from "../beacon/client.ts";
import { RendezvousLinks } from "./ws-relay-path.ts";
import { registryConnector } from "./ws-registry.ts";
import { IdentityError, loadOrCreateIdentity } from "../crypto/identity.ts";
import { startIpcServer, type IpcServer } from "../ipc/server.ts";
import { formatAddress, nodeOf, parseAddress } from "../protocol/address.ts";
import { RegistryClient, RegistryError } from "../registry/client.ts";
import { writeFileAtomic } from "../util/atomic-file.ts";
import { holdPidFile } from "../util/pid-file.ts";
import { createLogger, type Logger, type LogLevel } from "../util/log.ts";
import { pilotPaths, type PilotPaths } from "../util/paths.ts";
import { RotatingLogFile, type RotationPolicy } from "../util/rotating-log.ts";
import { NodeError } from "./local-node.ts";
import { DaemonNode } from "./node.ts";
import { TrustStore, TrustStoreError } from "./trust-store.ts";
import { UdpSocket } from "./udp-socket.ts";
import { pathMtuEnabled } from "./path-mtu-sizes.ts";
import { registeredEndpoints as hostEndpoints } from "./host-endpoints.ts";
import type { PathTimers } from "./paths.ts";
import type { StreamConfig } from "../transport/config.ts";
import { bufferLimitsFor } from "./buffer-budget.ts";
import { holdMemoryTrim } from "./memory-trim.ts";
import type { ServiceSettings } from "./services/service.ts";
import { secretFileIsOpen, WebhookSender, webhookSecret } from "./webhooks.ts";
import { openLocalDashboard, type LocalDashboard } from "./dashboard/server.ts";

export interface DaemonOptions {
  /** PILOT_HOME; defaults to the environment's. */
  readonly home?: string;
  readonly socketPath?: string;
  readonly registry: HostPort;
  /** More registries of the same deployment (one database, one key): the client fails over to them. */
  readonly registryAlternates?: readonly HostPort[];
  /** Beacon for endpoint discovery; null disables it. */
  readonly beacon: HostPort | null;
  /** Other beacons of the same deployment: the beacon client fails over to them (src/beacon/client.ts). */
  readonly beaconAlternates?: readonly HostPort[];
  /** The rendezvous's relay over WebSocket (ws:// or wss://), used when UDP does not work here. */
  readonly relayWs?: string | null;
  readonly listen: HostPort;
  readonly hostname?: string;
  readonly public?: boolean;
  readonly tags?: string[];
  readonly logLevel?: LogLevel;
  readonly logFormat?: "text" | "json";
  /** Log to this file, rotated at a bounded size (the daemon owns it); default: stderr. */
  readonly logFile?: { readonly path: string; readonly rotation?: RotationPolicy };
  readonly heartbeatMs?: number;
  readonly streamConfig?: Partial<StreamConfig>;
  /** Bytes for all stream buffers together (the per-peer limits scale with it); default 64 MiB. */
  readonly bufferBudget?: number;
  /** The local dashboard's loopback address (default 127.0.0.1, any free port); null: no dashboard. */
  readonly dashboard?: HostPort | null;
  /** Agent services switched off, and those open to strangers. */
  readonly services?: ServiceSettings;
  /** POST every local event to this http(s) URL, signed with `secret` (default: `$PILOT_HOME/webhook_secret`, created if missing). */
  readonly webhook?: { readonly url: string; readonly secret?: string; readonly userAgent?: string };
  /** Serve Prometheus metrics over HTTP at this address (`--metrics`, src/daemon/metrics.ts); none: no listener. */
  readonly metrics?: HostPort;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface RunningDaemon {
  readonly node: DaemonNode;
  readonly paths: PilotPaths;
  readonly socketPath: string;
  readonly endpoint: string;
  /** http://HOST:PORT/metrics when --metrics is on (the port actually bound). */
  readonly metricsUrl: string | null;
  stop(reason?: string): Promise<void>;
  /** Resolves when the daemon has stopped. */
  readonly stopped: Promise<void>;
}

export class DaemonStartError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export function parseHostPort(text: string, what: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):([0-9]{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new DaemonStartError("invalid_argument", `${what} "${text}" is not HOST:PORT`, `for example 127.0.0.1:9000`);
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" || host === "localhost" ? (host === "localhost" ? "127.0.0.1" : "0.0.0.0") : host, port };
}

/** "HOST:PORT" or several of one deployment, "A:9000,B:9000" (at most 8): the daemon fails over between them. */
export function parseRegistryList(text: string, what: string): HostPort[] {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length > 8) throw new DaemonStartError("invalid_argument", `${what} names ${parts.length} registries; at most 8`, "for example 10.0.0.1:9000,10.0.0.2:9000");
  return parts.map((p) => parseHostPort(p, what));
}

function formatHostPort(h: HostPort): string {
  return h.host.includes(":") ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`;
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  let logFile: RotatingLogFile | null = null;
  if (options.logFile) {
    try {
      mkdirSync(dirname(options.logFile.path), { recursive: true, mode: 0o700 });
      logFile = RotatingLogFile.open(options.logFile.path, options.logFile.rotation);
    } catch (e) {
      throw new DaemonStartError("log_file", `cannot open the log file ${options.logFile.path}: ${(e as Error).message}`, "check its directory's permissions");
    }
  }
  try {
    const daemon = await startDaemonWith(options, logFile);
    const releaseTrim = holdMemoryTrim();
    void daemon.stopped.then(() => {
      releaseTrim();
      logFile?.close();
    });
    return daemon;
  } catch (e) {
    logFile?.close();
    throw e;
  }
}

async function startDaemonWith(options: DaemonOptions, logFile: RotatingLogFile | null): Promise<RunningDaemon> {
  const env = options.home ? { ...process.env, PILOT_HOME: options.home } : process.env;
  const paths = pilotPaths(env);
  const socketPath = options.socketPath ?? paths.socket;
  const log = createLogger("daemon", { level: options.logLevel ?? "info", format: options.logFormat ?? "text", ...(logFile ? { sink: (line: string) => logFile.write(line) } : {}) });
  mkdirSync(paths.home, { recursive: true, mode: 0o700 });

  let identity;
  try {
    identity = loadOrCreateIdentity(paths.identity);
  } catch (e) {
    if (e instanceof IdentityError) throw new DaemonStartError("identity", e.message);
    throw e;
  }
  if (identity.created) log.info("new identity created", { path: paths.identity });

  let trust: TrustStore;
  try {
    trust = TrustStore.load(paths.trust);
  } catch (e) {
    if (e instanceof TrustStoreError) throw new DaemonStartError("trust_file", e.message);
    throw e;
  }

  let node: DaemonNode | undefined;
  // With no port given, reuse the last run's port: a restart then looks like nothing
  // happened to peers (and to NAT mappings). If it is taken now, any free port will do.
  const state = readState(paths.state);
  const onDatagram = (d: Uint8Array, h: string, p: number) => node?.plane.receiveDatagram(d, h, p);
  let udp: UdpSocket | undefined;
  // "::" is dual stack: one socket for IPv4 and IPv6. Where the kernel has no IPv6, or keeps
  // a `::` socket IPv6-only (net.ipv6.bindv6only=1), the daemon listens on 0.0.0.0 instead.
  let listenHost = options.listen.host;
  const openAt = async (host: string, port: number): Promise<UdpSocket | undefined> => {
    const socket = await UdpSocket.open({ hostname: host, port, onDatagram }).catch(() => undefined);
    if (socket && host === "::" && !socket.dualStack) {
      socket.close();
      return undefined;
    }
    return socket;
  };
  if (options.listen.port === 0 && state.tunnel_port) udp = await openAt(listenHost, state.tunnel_port);
  if (!udp && listenHost === "::") {
    // A port that is taken is taken for IPv4 too: no fallback then, the error says so below.
    let taken = false;
    const socket = await UdpSocket.open({ hostname: "::", port: options.listen.port, onDatagram }).catch((e) => {
      taken = (e as { code?: string }).code === "EADDRINUSE";
      return undefined;
    });
    if (socket?.dualStack) udp = socket;
    else socket?.close();
    if (!udp && !taken) {
      log.info("no dual-stack IPv6 socket here; listening on IPv4 only", { listen: formatHostPort(options.listen) });
      listenHost = "0.0.0.0";
      if (options.listen.port === 0 && state.tunnel_port) udp = await openAt(listenHost, state.tunnel_port);
    }
  }
  try {
    udp ??= await UdpSocket.open({ hostname: listenHost, port: options.listen.port, onDatagram });
  } catch (e) {
    // Taken: another program has it (as for --metrics). Anything else (not one of this machine's addresses, a
    // privileged port): the --listen value cannot be used here.
    const code = (e as { code?: string }).code === "EADDRINUSE" ? "already_exists" : "invalid_argument";
    throw new DaemonStartError(code, `cannot bind the tunnel's UDP socket to ${formatHostPort(options.listen)}: ${(e as Error).message}`, "pick another --listen address or port");
  }
  if (state.tunnel_port !== udp.port) writeFileAtomic(paths.state, JSON.stringify({ ...state, tunnel_port: udp.port }, null, 2) + "\n");
  const endpoint = formatHostPort({ host: listenHost, port: udp.port });
  // What we register: the listen address, and when it is a wildcard, the host's own addresses
  // too (candidates for peers on the same network; and how peers tell that we are not NATed).
  const dualStack = udp.dualStack;
  const endpoints = registeredEndpoints(listenHost, udp.port, dualStack);
  const cleanups: (() => void | Promise<void>)[] = [() => udp.close()];
  const fail = async (error: DaemonStartError): Promise<never> => {
    for (const c of cleanups.reverse()) await c();
    throw error;
  };

  const registryAddress = formatHostPort(options.registry);
  /** What `info` and the start result show: every registry given, as given. */
  const registryList = [options.registry, ...(options.registryAlternates ?? [])].map(formatHostPort).join(",");
  const known = readKnownRegistries(paths.knownRegistries);
  let registry: RegistryClient;
  try {
    registry = await RegistryClient.connect({
      host: options.registry.host,
      port: options.registry.port,
      alternates: options.registryAlternates,
      signer: identity.identity,
      registryKey: known[registryAddress],
      connectTimeoutMs: 5000,
      reconnect: { attempts: 2, baseDelayMs: 250, maxDelayMs: 2000 },
      // With a relay over WebSocket, the registry may be reached there too (TCP first, unless behind HTTPS_PROXY).
      ...(options.relayWs ? { connect: registryConnector({ relayWs: options.relayWs, tcp: options.registry, log: log.child("registry-ws") }) } : {}),
    });
  } catch (e) {
    const err = e as RegistryError;
    if (err.code === "registry_identity_changed") {
      return fail(new DaemonStartError("registry_identity_changed", `the registry at ${registryAddress} presented a different identity than the one pinned in ${paths.knownRegistries}`, "if the rendezvous was really reinstalled, delete its entry from that file and start again"));
    }
    return fail(registryConnectError(err, options.registry));
  }
  cleanups.push(() => registry.close());
  const registryKey = Buffer.from(registry.registryKey).toString("base64");
  if (known[registryAddress] !== registryKey) {
    known[registryAddress] = registryKey;
    writeFileAtomic(paths.knownRegistries, JSON.stringify(known, null, 2) + "\n");
  }

  let registered;
  try {
    registered = await registry.register({
      endpoints,
      ...(options.hostname ? { hostname: options.hostname } : {}),
      ...(options.public !== undefined ? { public: options.public } : {}),
      ...(options.tags ? { tags: options.tags } : {}),
    });
  } catch (e) {
    const err = e as RegistryError;
    if (err.code === "already_exists") {
      return fail(new DaemonStartError("already_exists", `the hostname "${options.hostname}" belongs to another node`, "choose another --hostname"));
    }
    if (err.code === "rate_limited" && /new registrations/.test(err.message)) {
      return fail(
        new DaemonStartError(
          "rate_limited",
          `the registry at ${registryAddress} refused to register a new node: too many new nodes from this address in the last minute`,
          "wait a minute and retry; whoever runs the rendezvous can raise the limit with: pilot rendezvous --registration-rate N (new nodes per source IP per minute, default 10)",
        ),
      );
    }
    return fail(new DaemonStartError(err.code ?? "registry_error", `registration failed: ${err.message}`));
  }
  const address = parseAddress(registered.address);
  if (!address.ok) return fail(new DaemonStartError("registry_error", `the registry assigned an invalid address ${registered.address}`));

  // The beacon: registration (our public endpoint, and the NAT keepalive toward it), hole
  // punching and the relay. Timers can be shortened for tests (PILOT_NAT_KEEPALIVE_MS).
  const natKeepalive = envMs("PILOT_NAT_KEEPALIVE_MS");
  const udpBeacon = options.beacon
    ? new BeaconClient({
        nodeId: nodeOf(address.value),
        identity: identity.identity,
        beaconKey: registry.registryKey,
        beacon: options.beacon,
        ...(options.beaconAlternates?.length ? { alternates: options.beaconAlternates, ...(envMs("PILOT_BEACON_FAILOVER_MS") ? { failoverAfterMs: envMs("PILOT_BEACON_FAILOVER_MS")! } : {}) } : {}),
        send: (d, h, p) => udp.send(d, h, p),
        log: log.child("beacon"),
        ...(natKeepalive ? { keepaliveMs: natKeepalive } : {}),
      })
    : null;
  // With a relay over WebSocket, the beacon is wrapped: UDP first, the WebSocket when UDP is silent.
  const rendezvous = options.relayWs
    ? new RendezvousLinks({
        udp: udpBeacon,
        ws: { url: options.relayWs },
        nodeId: nodeOf(address.value),
        identity: identity.identity,
        beaconKey: registry.registryKey,
        log: log.child("relay-tcp"),
        ...(natKeepalive ? { keepaliveMs: natKeepalive } : {}),
        ...(envMs("PILOT_RELAY_TCP_AFTER_MS") ? { fallbackAfterMs: envMs("PILOT_RELAY_TCP_AFTER_MS")! } : {}),
      })
    : udpBeacon;
  const pathTimers: Partial<PathTimers> = {
    ...(natKeepalive ? { heartbeat: natKeepalive } : {}),
    ...(envMs("PILOT_PATH_UPGRADE_MS") ? { upgradeFirst: envMs("PILOT_PATH_UPGRADE_MS")! } : {}),
  };

  udp.onDontFragmentRefused = (frame, host, port) => node?.plane.dontFragmentRefused(frame.length, host, port);
  node = new DaemonNode({
    identity: identity.identity,
    address: address.value,
    hostname: registered.hostname,
    public: registered.public,
    tags: registered.tags,
    registry,
    registryAddress: registryList,
    trust,
    log,
    endpoint,
    send: (f, h, p, df) => udp.send(f, h, p, df),
    flush: () => udp.flush(),
    pathMtu: pathMtuEnabled(env),
    rendezvous,
    isLocalEndpoint: (e) => isLocalEndpoint(e, udp.port),
    pathTimers,
    streamConfig: options.streamConfig,
    bufferLimits: options.bufferBudget !== undefined ? bufferLimitsFor(options.bufferBudget) : undefined,
    exposeFile: join(paths.home, "expose.json"),
    stateDir: paths.home,
    services: options.services,
  });
  const daemonNode = node;
  cleanups.push(() => daemonNode.shutdown());
  let beaconReady: Promise<boolean> = Promise.resolve(false);
  if (rendezvous) {
    rendezvous.start();
    cleanups.push(() => rendezvous.stop());
    beaconReady = rendezvous.waitRegistered(options.relayWs ? 3000 : 2000);
  }

  try {
    await registry.subscribe();
  } catch (e) {
    log.warn("could not subscribe to registry events; trust changes arrive with the next sync", { error: (e as Error).message });
  }
  await node.syncTrust();
  // Exposed ports (pilot expose) come back before apps can connect; their streams still need trust.
  node.exposes.restore();
  await node.startServices();

  // The first beacon registration (relay and punching) is normally one round trip away.
  if (rendezvous && !(await beaconReady)) log.warn("no answer from the beacon yet; relay and hole punching start once it answers", options.beacon ? { beacon: formatHostPort(options.beacon) } : { relay_ws: options.relayWs ?? "" });

  const heartbeatMs = options.heartbeatMs ?? 30_000;
  const heartbeat = setInterval(async () => {
    try {
      await registry.heartbeat(registeredEndpoints(listenHost, udp.port, dualStack));
    } catch (e) {
      log.warn("registry heartbeat failed", { error: (e as Error).message });
    }
  }, heartbeatMs);
  cleanups.push(() => clearInterval(heartbeat));

  // Webhooks: every local event, POSTed in the background (src/daemon/webhooks.ts).
  let webhook: WebhookSender | null = null;
  if (options.webhook) {
    const s = webhookSecret(paths.home, options.webhook.secret);
    if (s.created) log.info("webhook secret created", { file: s.file! });
    else if (s.file && secretFileIsOpen(s.file)) log.warn("the webhook secret file is readable by others; chmod 600 it", { file: s.file });
    const sender = new WebhookSender({
      url: options.webhook.url,
      secret: s.secret,
      node: formatAddress(address.value),
      boot: daemonNode.events.boot,
      log: log.child("webhook"),
      userAgent: options.webhook.userAgent,
      ...(envMs("PILOT_WEBHOOK_BACKOFF_MS") ? { backoffMs: envMs("PILOT_WEBHOOK_BACKOFF_MS")! } : {}),
      ...(envMs("PILOT_WEBHOOK_TIMEOUT_MS") ? { timeoutMs: envMs("PILOT_WEBHOOK_TIMEOUT_MS")! } : {}),
    });
    // What happened during start-up first, then everything after.
    for (const event of daemonNode.events.recent()) sender.enqueue(event);
    const unsubscribe = daemonNode.events.subscribe((event) => sender.enqueue(event));
    cleanups.push(() => {
      unsubscribe();
      sender.stop();
    });
    webhook = sender;
    log.info("webhook on", { url: sender.stats().url });
  }

  // The local dashboard (src/daemon/dashboard): a page on loopback showing what `status` shows.
  let dashboard: LocalDashboard | null = null;
  if (options.dashboard !== null) {
    const at = options.dashboard ?? { host: "127.0.0.1", port: 0 };
    try {
      dashboard = openLocalDashboard({ home: paths.home, host: at.host, port: at.port, source: daemonNode, gatewayDir: paths.gatewayDir, log: log.child("dashboard") });
    } catch (e) {
      return fail(new DaemonStartError(e instanceof RangeError ? "invalid_argument" : "dashboard_failed", `cannot open the dashboard on ${formatHostPort(at)}: ${(e as Error).message}`, "pick another --dashboard 127.0.0.1:PORT, or --dashboard off"));
    }
    const opened = dashboard;
    cleanups.push(() => opened.close());
  }

  // Before the IPC socket: a daemon that answers on it has every listener it was asked for (a detached start
  // that sees it answer must not report success for a daemon about to fail on a taken --metrics port).
  let ipc: IpcServer | undefined;
  let metricsUrl: string | null = null;
  if (options.metrics) {
    const { serveDaemonMetrics } = await import("./metrics.ts");
    try {
      const m = serveDaemonMetrics({ node, ipcClients: () => ipc?.clientCount ?? 0, address: options.metrics, log: log.child("metrics") });
      cleanups.push(() => m.close());
      metricsUrl = m.url;
    } catch (e) {
      const code = (e as { code?: string }).code === "EADDRINUSE" ? "already_exists" : "invalid_argument";
      return fail(new DaemonStartError(code, `cannot serve metrics on ${formatHostPort(options.metrics)}: ${(e as Error).message}`, "pick another --metrics address (one of this machine's) or port"));
    }
  }

  try {
    const dashboardMethod = () => {
      if (!dashboard) throw new NodeError("not_found", "this daemon runs without a dashboard", "start it with --dashboard 127.0.0.1:0 (or pilot config --unset dashboard)");
      return dashboard.describe();
    };
    // The address --metrics actually bound (port 0 picks one): what a detached start reports.
    const metricsMethod = () => {
      if (!metricsUrl) throw new NodeError("not_found", "this daemon serves no metrics", "start it with --metrics 127.0.0.1:9100 (or pilot config --set metrics=127.0.0.1:9100)");
      return { url: metricsUrl };
    };
    ipc = await startIpcServer({ node, socketPath, logger: log.child("ipc"), webhookStatus: () => webhook?.stats() ?? null, methods: { dashboard: dashboardMethod, metrics: metricsMethod } });
  } catch (e) {
    const err = e as NodeError;
    if (err.code === "already_exists") {
      return fail(new DaemonStartError("already_exists", `another daemon is already serving ${socketPath}`, "stop it first with: pilot daemon stop"));
    }
    return fail(new DaemonStartError("ipc_failed", `cannot open the IPC socket ${socketPath}: ${err.message}`));
  }
  const openedIpc = ipc;
  cleanups.push(() => openedIpc.close());

  // Held open while the daemon lives: how `daemon stop` tells this home's daemon from a reused pid.
  cleanups.push(holdPidFile(paths.pidFile));
  log.info("daemon ready", {
    address: formatAddress(address.value),
    hostname: registered.hostname ?? "",
    endpoint,
    registry: registryList,
    socket: socketPath,
    public: registered.public,
  });

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | null = null;
  const stop = (reason = "stop requested") => {
    stopping ??= (async () => {
      log.info("daemon stopping", { reason });
      for (const c of cleanups.reverse()) {
        try {
          await c();
        } catch (e) {
          log.warn("error while stopping", { error: (e as Error).message });
        }
      }
      trust.flush();
      log.info("daemon stopped");
      resolveStopped();
    })();
    return stopping;
  };
  return { node, paths, socketPath, endpoint, metricsUrl, stop, stopped };
}

/** Short words for why a TCP connection to the registry failed. */
const CONNECT_FAILURES: readonly [RegExp, string][] = [
  [/ECONNREFUSED/, "connection refused"],
  [/ETIMEDOUT|no hello from/, "no answer"],
  [/EHOSTUNREACH|ENETUNREACH/, "no route to the host"],
  [/ENOTFOUND|EAI_AGAIN|EAI_NONAME/, "unknown host"],
  [/ECONNRESET|closed the connection/, "the connection was closed at once"],
];

/**
 * Why the registry could not be reached, in one line that names the address
 * tried and the command that starts a rendezvous there. A refusal by the
 * registry's per-address connection limit names the option that raises it.
 */
export function registryConnectError(err: RegistryError, registry: HostPort): DaemonStartError {
  const address = formatHostPort(registry);
  if (err.code === "rate_limited" && /connections from this address/.test(err.message)) {
    return new DaemonStartError(
      "rate_limited",
      `the registry at ${address} refused the connection: too many open connections from this address`,
      "close some daemons or clients of that registry; whoever runs the rendezvous can raise the limit with: pilot rendezvous --max-connections-per-ip N (default 64)",
    );
  }
  const why = CONNECT_FAILURES.find(([pattern]) => pattern.test(err.message))?.[1] ?? err.message.replace(/^cannot reach the registry at \S+: /, "");
  const start = registry.port === 9000 ? "pilot rendezvous" : `pilot rendezvous --registry-addr ${address}`;
  return new DaemonStartError("registry_unreachable", `cannot reach the registry at ${address} (${why}); start one with: ${start}`, "or use a running one: pilot daemon start --registry HOST:PORT (also PILOT_REGISTRY, or pilot config --set registry=HOST:PORT)");
}

/** The endpoints a daemon registers (src/daemon/host-endpoints.ts), from the host's interfaces now. */
function registeredEndpoints(host: string, port: number, dualStack: boolean): string[] {
  const interfaces = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
  return hostEndpoints(host, port, dualStack, interfaces, process.env.PILOT_IPV6_ULA === "1");
}

let localAddresses: { at: number; ips: Set<string> } | null = null;

/** Is "ip:port" this host's own address for our tunnel port (so the beacon sees us without a NAT)? */
function isLocalEndpoint(endpoint: string, port: number): boolean {
  const colon = endpoint.lastIndexOf(":");
  if (Number(endpoint.slice(colon + 1)) !== port) return false;
  const ip = endpoint.slice(0, colon).replace(/^\[|\]$/g, "");
  const now = Date.now();
  if (!localAddresses || now - localAddresses.at > 10_000) {
    const ips = new Set<string>();
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) ips.add(a.address);
    localAddresses = { at: now, ips };
  }
  return localAddresses.ips.has(ip);
}

/** A positive integer of milliseconds from the environment (test and tuning knobs), else undefined. */
function envMs(name: string): number | undefined {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : undefined;
}

function readState(path: string): { tunnel_port?: number } {
  try {
    const data = JSON.parse(readFileSync(path, "utf8"));
    const port = data?.tunnel_port;
    return Number.isInteger(port) && port > 0 && port <= 65535 ? { tunnel_port: port } : {};
  } catch {
    return {}; // missing or damaged: it only holds a preference
  }
}

function readKnownRegistries(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  try {
    const data = JSON.parse(readFileSync(path, "utf8"));
    return data && typeof data === "object" && !Array.isArray(data) ? data : {};
  } catch {
    throw new DaemonStartError("known_registries", `${path} is not valid JSON`, "fix or delete it (it only pins registry keys)");
  }
}

