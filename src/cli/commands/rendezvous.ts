/**
 * `pilot rendezvous`: runs the registry (TCP) and the beacon (UDP) in the
 * foreground until SIGTERM or SIGINT. Logs go to stderr, one line per event:
 * `time LEVEL component: msg key=value ...`, or one JSON object per line with
 * `--log-format json`. The ready message (with --json, the ready envelope)
 * goes to stdout once both sockets listen, with the ports actually bound.
 */
import { join } from "node:path";
import { pilotPaths } from "../../util/paths.ts";
import type { CommandSpec } from "../command.ts";
import { CliError, ErrorCode } from "../errors.ts";
import { badValue, byteSizeOption, choiceOption, durationOption, intOption, logLevelOption, rateOption, optionText } from "../args.ts";

export function defaultStorePath(): string {
  return join(pilotPaths().rendezvousDir, "registry.db");
}

/** "HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces); IP literals only. */
export function parseListenAddress(text: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]*)):([0-9]{1,5})$/.exec(String(text));
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw badValue(`${flag} "${text}" is not HOST:PORT`, `use an IP literal and a port, e.g. ${flag} 0.0.0.0:9000 or ${flag} [::]:9000`);
  }
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

const STORE_URL_HINT =
  "use postgres://USER:PASS@HOST:PORT/DB, or for a unix socket postgres://USER:PASS@localhost:PORT/DB?host=/SOCKET/DIR (or put it in PILOT_STORE, which keeps the password off the command line)";

/**
 * --store, else $PILOT_STORE, else the default SQLite file. A postgres URL
 * must parse, with a host, a database and, in `?host=`, only an absolute
 * socket directory. libpq's unix socket form with no host
 * (postgres://USER:PASS@/DB?host=/SOCKET/DIR) is not a WHATWG URL, so it
 * comes back with "localhost" as its host (the socket directory wins).
 */
export function storeOption(value: unknown): string {
  let text = typeof value === "string" && value !== "" ? value : process.env.PILOT_STORE || defaultStorePath();
  if (/^postgres(ql)?:/i.test(text)) {
    const m = /^(postgres(?:ql)?:\/\/(?:[^@/?#]*@)?)(\/.*)$/i.exec(text);
    if (m && /[?&]host=/.test(m[2]!)) text = `${m[1]}localhost${m[2]}`;
    let url: URL | undefined;
    try {
      url = new URL(text);
    } catch {
      url = undefined;
    }
    if (!url || !url.hostname || url.pathname.length < 2) throw badValue("--store is not a usable PostgreSQL URL", STORE_URL_HINT);
    const socketDir = url.searchParams.get("host");
    if (socketDir !== null && !socketDir.startsWith("/")) {
      throw badValue(`--store: host=${JSON.stringify(socketDir)} in a PostgreSQL URL must be the absolute path of the server's unix socket directory`, STORE_URL_HINT);
    }
  }
  return text;
}

function formatHostPort(a: { host: string; port: number }): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export const rendezvousCommand: CommandSpec = {
  name: "rendezvous",
  description: "Run the rendezvous (registry on TCP, beacon on UDP) in the foreground",
  options: [
    { flags: "--registry-addr <addr>", description: "TCP address of the registry", default: "0.0.0.0:9000" },
    { flags: "--beacon-addr <addr>", description: "UDP address of the beacon", default: "0.0.0.0:9001" },
    { flags: "--beacon-peers <list>", description: "the other beacons of this deployment (HOST:PORT,...; same identity): nodes registered at any of them can punch and relay to each other" },
    { flags: "--ws-addr <addr>", description: "TCP address of the relay over WebSocket, for nodes whose network drops UDP (443 in production; off by default)" },
    { flags: "--tls-cert <file>", description: "PEM certificate chain for --ws-addr (serves wss://); without it, plain ws:// (behind a TLS-terminating load balancer)" },
    { flags: "--tls-key <file>", description: "PEM private key for --tls-cert" },
    { flags: "--relay-rate <size>", description: "relay bandwidth per sending node, per second (UDP and WebSocket together; also its burst)", default: "4MiB" },
    { flags: "--store <path|url>", description: "SQLite file (default $PILOT_HOME/rendezvous/registry.db), or postgres://USER:PASS@HOST:PORT/DB shared by several registries (a unix socket: postgres://USER:PASS@localhost:PORT/DB?host=/SOCKET/DIR); also $PILOT_STORE" },
    { flags: "--health-addr <addr>", description: "serve GET /healthz (200 while the registry and its store answer, else 503) on this HOST:PORT; off by default" },
    { flags: "--identity <path>", description: "the rendezvous key file (default: beside a SQLite store, else $PILOT_HOME/rendezvous/identity.json); registries sharing a database share it" },
    { flags: "--registration-rate <n>", description: "new keys registered per source IP per minute", default: 10 },
    { flags: "--request-rate <n>", description: "signed requests per node per second, for its own calls and for its lookups apart", default: 10 },
    { flags: "--max-connections-per-ip <n>", description: "open registry connections allowed from one IP", default: 64 },
    { flags: "--max-connections-per-prefix <n>", description: "open registry connections allowed from one IPv4 /24 or IPv6 /56", default: 256 },
    { flags: "--max-connections <n>", description: "open registry connections in all (when full, the network holding the most gives way)", default: 10000 },
    { flags: "--auth-timeout <duration>", description: "a connection that sends no valid signed request within this is closed", default: "5s" },
    { flags: "--prefix-registration-rate <n>", description: "new keys registered per IPv4 /24 or IPv6 /56 per minute", default: 30 },
    { flags: "--pow-bits <n>", description: "proof of work (leading zero bits) a new key shows at low registration rates; 0: none", default: 12 },
    { flags: "--pow-free-rate <n>", description: "new keys per minute, registry-wide, before the proof of work grows (2 bits per doubling)", default: 60 },
    { flags: "--reap-after <duration>", description: "a node not seen for this long loses its hostname and leaves search", default: "30d" },
    { flags: "--dashboard <addr>", description: "serve the operator page (aggregate counts only: nodes online, requests, relay use, beacon) on this HOST:PORT; off by default" },
    { flags: "--log-format <format>", description: "text (key=value) or json (one object per line)", default: "text" },
    { flags: "--log-level <level>", description: "debug, info, warn or error", default: "info" },
    { flags: "--metrics <ip:port>", description: "serve Prometheus metrics (aggregate counts only) at http://IP:PORT/metrics, e.g. 127.0.0.1:9101 (default: none)" },
  ],
  examples: [
    "pilot rendezvous",
    "pilot rendezvous --registry-addr 127.0.0.1:0 --beacon-addr 127.0.0.1:0 --store /tmp/r.db --json",
    "PILOT_STORE=postgres://pilot:secret@db:5432/pilot pilot rendezvous --identity /etc/pilot/rendezvous-identity.json",
  ],
  returns: {
    registry: "HOST:PORT the registry listens on (TCP)",
    beacon: "HOST:PORT the beacon listens on (UDP)",
    ws_relay: "ws(s)://HOST:PORT of the relay over WebSocket (TCP), or null without --ws-addr; daemons take it as --relay-ws",
    public_key: "the rendezvous's Ed25519 public key (base64); clients pin it",
    dashboard: "with --dashboard: the operator page's URL",
    metrics: "http://IP:PORT/metrics when --metrics is given, else null",
    store: "path of the SQLite store, or the PostgreSQL URL without its password",
    health: "URL of GET /healthz (only with --health-addr)",
  },
  errors: ["invalid_argument", "already_exists", "internal"],
  async run({ out }, _args, options) {
    const registryAddr = parseListenAddress(optionText(options.registryAddr, "--registry-addr") ?? "", "--registry-addr");
    const beaconAddr = parseListenAddress(optionText(options.beaconAddr, "--beacon-addr") ?? "", "--beacon-addr");
    const dashboardAddr = options.dashboard === undefined ? undefined : parseListenAddress(optionText(options.dashboard, "--dashboard") ?? "", "--dashboard");
    const registrationRate = rateOption(options.registrationRate, "--registration-rate", 1_000_000)!;
    const requestRate = rateOption(options.requestRate, "--request-rate", 1_000_000)!;
    const maxConnectionsPerIp = intOption(options.maxConnectionsPerIp, "--max-connections-per-ip", 1, 1_000_000)!;
    const format = choiceOption(options.logFormat, "--log-format", ["text", "json"] as const)!;
    const level = logLevelOption(options.logLevel)!;
    const maxConnectionsPerPrefix = intOption(options.maxConnectionsPerPrefix, "--max-connections-per-prefix", 1, 1_000_000)!;
    const maxConnections = intOption(options.maxConnections, "--max-connections", 1, 10_000_000)!;
    const authTimeoutMs = durationOption(options.authTimeout, "--auth-timeout", { maxMs: 10 * 60_000 })!;
    const prefixRegistrationRate = rateOption(options.prefixRegistrationRate, "--prefix-registration-rate", 1_000_000)!;
    const powBits = intOption(options.powBits, "--pow-bits", 0, 28)!;
    const powFreeRate = rateOption(options.powFreeRate, "--pow-free-rate", 1_000_000)!;
    const reapAfterMs = durationOption(options.reapAfter, "--reap-after", { maxMs: 3650 * 86_400_000 })!;
    const metricsText = optionText(options.metrics, "--metrics");
    let metrics: { host: string; port: number } | undefined;
    if (metricsText !== undefined) {
      const { parseMetricsAddress } = await import("../../util/metrics-listener.ts");
      try {
        metrics = parseMetricsAddress(metricsText);
      } catch (e) {
        throw badValue(`--metrics: ${(e as Error).message}`, "for example: --metrics 127.0.0.1:9101 (loopback: only this machine can scrape)");
      }
    }
    const wsAddr = options.wsAddr === undefined ? undefined : parseListenAddress(optionText(options.wsAddr, "--ws-addr") ?? "", "--ws-addr");
    const tlsCertPath = optionText(options.tlsCert, "--tls-cert");
    const tlsKeyPath = optionText(options.tlsKey, "--tls-key");
    if ((tlsCertPath === undefined) !== (tlsKeyPath === undefined)) throw badValue("--tls-cert and --tls-key go together", "give both, e.g. --tls-cert /etc/pilot/cert.pem --tls-key /etc/pilot/key.pem");
    if (tlsCertPath !== undefined && !wsAddr) throw badValue("--tls-cert serves the WebSocket relay: it needs --ws-addr", "for example: --ws-addr 0.0.0.0:443 --tls-cert cert.pem --tls-key key.pem");
    let tls: { cert: string; key: string } | undefined;
    if (tlsCertPath !== undefined && tlsKeyPath !== undefined) {
      const { readFileSync } = await import("node:fs");
      const read = (path: string, flag: string) => {
        try {
          return readFileSync(path, "utf8");
        } catch (e) {
          throw new CliError(ErrorCode.InvalidArgument, `${flag}: cannot read ${path}: ${(e as Error).message}`, "give a readable PEM file");
        }
      };
      tls = { cert: read(tlsCertPath, "--tls-cert"), key: read(tlsKeyPath, "--tls-key") };
      if (!/-----BEGIN [A-Z ]*CERTIFICATE-----/.test(tls.cert)) throw badValue(`--tls-cert ${tlsCertPath} is not a PEM certificate`, "give the PEM certificate chain (-----BEGIN CERTIFICATE-----)");
      if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(tls.key)) throw badValue(`--tls-key ${tlsKeyPath} is not a PEM private key`, "give the PEM private key (-----BEGIN PRIVATE KEY-----)");
    }
    let relayRate: number;
    try {
      relayRate = byteSizeOption(options.relayRate, "--relay-rate", { min: 64 * 1024, max: 1024 * 1024 * 1024 })!;
    } catch (e) {
      throw badValue((e as Error).message, "for example: --relay-rate 4MiB");
    }
    const beaconPeers = await beaconPeersOption(optionText(options.beaconPeers, "--beacon-peers"));
    const storePath = storeOption(options.store);
    const identityPath = optionText(options.identity, "--identity") || undefined;
    const healthText = optionText(options.healthAddr, "--health-addr");
    const health = healthText ? parseListenAddress(healthText, "--health-addr") : undefined;
    // Loaded here, not at the top: other commands should not pay for sqlite and sockets at start-up.
    const { createLogger } = await import("../../util/log.ts");
    const { startRendezvous } = await import("../../registry/rendezvous.ts");
    const { DEFAULT_SERVER_LIMITS } = await import("../../registry/server.ts");
    const log = createLogger("rendezvous", { format, level });
    let rendezvous;
    try {
      rendezvous = await startRendezvous({
        registry: registryAddr,
        beacon: beaconAddr,
        ...(wsAddr ? { wsRelay: { ...wsAddr, ...(tls ? { tls } : {}) } } : {}),
        storePath,
        identityPath,
        health,
        log,
        metrics,
        beaconLimits: { relayBytesPerSecond: relayRate, relayBurstBytes: relayRate },
        ...(beaconPeers.length ? { beaconPeers } : {}),
        limits: {
          ...DEFAULT_SERVER_LIMITS,
          registrationsPerIp: { rate: registrationRate / 60, burst: Math.max(1, Math.ceil(registrationRate)) },
          registrationsPerPrefix: { rate: prefixRegistrationRate / 60, burst: Math.max(1, Math.ceil(prefixRegistrationRate)) },
          requestsPerNode: { rate: requestRate, burst: Math.max(1, Math.ceil(requestRate * 20)) },
          lookupsPerNode: { rate: requestRate, burst: Math.max(1, Math.ceil(requestRate * 5)) },
          inboundLookupsPerNode: { rate: requestRate, burst: Math.max(1, Math.ceil(requestRate * 5)) },
          pow: { ...DEFAULT_SERVER_LIMITS.pow, baseBits: powBits, freePerMinute: powFreeRate },
          reapAfterMs,
          maxConnectionsPerIp,
          maxConnectionsPerPrefix,
          maxConnections,
          maxUnauthenticated: Math.max(1, Math.floor(maxConnections / 5)),
          authTimeoutMs,
        },
      });
    } catch (e: any) {
      if (e?.code === "EADDRINUSE") {
        throw new CliError(ErrorCode.AlreadyExists, `an address is already in use: ${e.message}`, "another process listens there; choose another --registry-addr / --beacon-addr / --ws-addr / --metrics");
      }
      if (e?.code === "EADDRNOTAVAIL" || e?.code === "EACCES") {
        throw new CliError(ErrorCode.InvalidArgument, `cannot listen: ${e.message}`, "use an address of this machine and a port you may bind");
      }
      throw new CliError(ErrorCode.Internal, `cannot start the rendezvous: ${e?.message ?? e}`);
    }
    let dashboard;
    if (dashboardAddr) {
      const { startRendezvousDashboard } = await import("../../registry/dashboard/server.ts");
      try {
        dashboard = startRendezvousDashboard({ ...dashboardAddr, stats: () => rendezvous.stats(), log: log.child("dashboard") });
      } catch (e: any) {
        await rendezvous.close();
        throw new CliError(e?.code === "EADDRINUSE" ? ErrorCode.AlreadyExists : ErrorCode.InvalidArgument, `cannot serve the operator page on ${formatHostPort(dashboardAddr)}: ${e?.message ?? e}`, "choose another --dashboard address");
      }
    }
    const data = {
      registry: formatHostPort(rendezvous.registry),
      ...(dashboard ? { dashboard: `http://${formatHostPort(dashboard)}/` } : {}),
      beacon: formatHostPort(rendezvous.beacon),
      ws_relay: rendezvous.wsRelay?.url ?? null,
      public_key: rendezvous.publicKey,
      store: rendezvous.storePath,
      metrics: rendezvous.metricsUrl,
      ...(rendezvous.health ? { health: `http://${formatHostPort(rendezvous.health)}/healthz` } : {}),
    };
    // Handlers first, then "ready": whoever reacts to the ready line may signal at once.
    const stopSignal = new Promise<string>((resolve) => {
      process.once("SIGTERM", () => resolve("SIGTERM"));
      process.once("SIGINT", () => resolve("SIGINT"));
    });
    log.info("listening", data);
    out.result(data, (d) => [`rendezvous running (Ctrl-C to stop)`, `  registry    tcp ${d.registry}`, `  beacon      udp ${d.beacon}`, ...(d.ws_relay ? [`  ws relay    tcp ${d.ws_relay}`] : []), `  public key  ${d.public_key}`, `  store       ${d.store}`, ...(d.health ? [`  health      ${d.health}`] : []), ...(d.metrics ? [`  metrics     ${d.metrics}`] : []), ...(d.dashboard ? [`  dashboard   ${d.dashboard}`] : [])].join("\n"));
    const signal = await stopSignal;
    log.info("stopping", { signal });
    dashboard?.close();
    await rendezvous.close();
    log.info("stopped");
  },
};

/** --beacon-peers: HOST:PORT,... (IP literals, or names resolved once at start), at most 64. */
async function beaconPeersOption(text: string | undefined): Promise<{ host: string; port: number }[]> {
  if (text === undefined || text.trim() === "") return [];
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length > 64) throw badValue(`--beacon-peers names ${parts.length} beacons; at most 64`, "for example: --beacon-peers 10.0.0.2:9001,10.0.0.3:9001");
  const { lookup } = await import("node:dns/promises");
  const peers: { host: string; port: number }[] = [];
  for (const part of parts) {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(part);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) throw badValue(`--beacon-peers: "${part}" is not HOST:PORT`, "for example: --beacon-peers 10.0.0.2:9001,[2001:db8::2]:9001");
    const host = m[1] ?? m[2]!;
    try {
      peers.push({ host: (await lookup(host)).address, port });
    } catch (e) {
      throw badValue(`--beacon-peers: cannot resolve ${host}: ${(e as Error).message}`, "give an IP address or a name this machine resolves");
    }
  }
  return peers;
}
