/**
 * The gateway: a table of mappings (a Pilot agent <-> a local IP), a TCP
 * listener on each mapped `IP:port`, and a bridge per accepted connection to
 * the agent's same Pilot port through the local daemon.
 *
 * It is a client of the daemon like any app (one Driver, reconnected on
 * demand if the daemon restarts). Operations that change the table run one
 * at a time, so two `map` requests never pick the same address.
 */
import net from "node:net";
import type { Driver } from "../driver/index.ts";
import { NodeError } from "../driver/index.ts";
import type { Logger } from "../util/log.ts";
import { addAlias, AliasLedger, currentPlatform, interfacesWith, needsAlias, removeAlias, type Platform } from "./aliases.ts";
import { bridge, type PilotStream } from "./bridge.ts";
import { asGatewayError, GatewayError } from "./errors.ts";
import { candidates, contains, formatIPv4, parseIPv4, unusableReason, type Subnet } from "./subnet.ts";

/** One mapping as the control socket and the CLI report it. */
export interface MappingInfo {
  local_ip: string;
  pilot_addr: string;
  hostname: string | null;
  ports: number[];
  /**
   * The ports whose connections also run the secure channel (src/driver/secure.ts)
   * inside their Pilot stream: secure is a property of a mapped port.
   */
  secure_ports: number[];
  /** True when every mapped port is secure (kept for clients that predate secure_ports). */
  secure: boolean;
  /** Bridged connections open now. */
  connections: number;
  /** Connections accepted since the mapping was made. */
  total_connections: number;
  /** Connections whose Pilot side failed (each answered 502 or reset). */
  failed_connections: number;
  bytes_up: number;
  bytes_down: number;
  mapped_at: string;
}

export interface GatewayOptions {
  subnet: Subnet;
  /** Opens a driver to the local daemon. */
  connect: () => Promise<Driver>;
  ledger: AliasLedger;
  log: Logger;
  platform?: Platform;
}

/** How many automatically chosen addresses to try when the first ones are busy. */
const MAX_ADDRESS_TRIES = 16;
/** After a failed connect to the daemon, fail fast for this long instead of retrying on every connection. */
const RECONNECT_BACKOFF_MS = 250;

interface Mapping {
  ip: string;
  address: string;
  hostname: string | null;
  ports: number[];
  /** The ports mapped with --secure. */
  securePorts: Set<number>;
  aliasAdded: boolean;
  servers: Map<number, net.Server>;
  connections: Set<{ reset(): void; port: number }>;
  total: number;
  failed: number;
  bytesUp: number;
  bytesDown: number;
  mappedAt: Date;
}

export class Gateway {
  readonly subnet: Subnet;
  private readonly mappings = new Map<string, Mapping>();
  private readonly byIp = new Map<string, Mapping>();
  private driver: Driver | null = null;
  private connecting: Promise<Driver> | null = null;
  private lastConnectFailure: { at: number; error: GatewayError } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly platform: Platform;

  constructor(private readonly options: GatewayOptions) {
    this.subnet = options.subnet;
    this.platform = options.platform ?? currentPlatform();
  }

  /**
   * Maps `target` (hostname, address or node id) on `ports`; `ip` picks the
   * local address; `secure` wraps each connection to these ports in the
   * secure channel. Idempotent per agent: mapping it again adds ports (plain
   * or secure, each port its own) and keeps its IP; a port that is mapped
   * already keeps its mode, and asking for the other mode is an error.
   */
  map(target: string, ports: readonly number[], options: { ip?: string; secure?: boolean } = {}): Promise<{ mapping: MappingInfo; created: boolean; added_ports: number[] }> {
    return this.serial(() => this.doMap(target, ports, options.ip, options.secure === true));
  }

  /**
   * Removes the mapping named by its local IP, hostname, address or node id;
   * with `ports`, only those ports (the whole mapping if that is all of them).
   */
  unmap(target: string, ports?: readonly number[]): Promise<MappingInfo & { alias_removed: boolean; removed_ports: number[]; remaining_ports: number[] }> {
    return this.serial(() => this.doUnmap(target, ports));
  }

  list(): MappingInfo[] {
    return [...this.mappings.values()].sort((a, b) => (parseIPv4(a.ip) ?? 0) - (parseIPv4(b.ip) ?? 0)).map(info);
  }

  /** Closes every listener and connection, removes every alias it added, disconnects from the daemon. */
  stop(): Promise<{ removed_aliases: string[]; failed_aliases: { ip: string; error: string }[] }> {
    return this.serial(async () => {
      this.stopped = true;
      const removed: string[] = [];
      const failed: { ip: string; error: string }[] = [];
      for (const m of [...this.mappings.values()]) {
        const r = await this.release(m);
        if (r.removed) removed.push(m.ip);
        if (r.error) failed.push({ ip: m.ip, error: r.error });
      }
      // Anything recorded but not attached to a mapping (a map that failed half-way).
      for (const ip of [...this.options.ledger.aliases]) {
        try {
          await removeAlias(ip, this.platform);
          this.options.ledger.forget(ip);
          removed.push(ip);
        } catch (e) {
          failed.push({ ip, error: (e as Error).message });
        }
      }
      if (failed.length === 0) this.options.ledger.remove();
      const driver = this.driver;
      this.driver = null;
      await driver?.close();
      return { removed_aliases: removed, failed_aliases: failed };
    });
  }

  // ---- the daemon --------------------------------------------------------------

  /** The driver, connecting (again) if the daemon went away. */
  private async getDriver(): Promise<Driver> {
    if (this.driver && !this.driver.closed) return this.driver;
    if (this.stopped) throw new GatewayError("not_running", "the gateway is stopping");
    if (this.connecting) return this.connecting;
    const recent = this.lastConnectFailure;
    if (recent && Date.now() - recent.at < RECONNECT_BACKOFF_MS) throw recent.error;
    this.connecting = (async () => {
      try {
        const driver = await this.options.connect();
        driver.on("close", (error?: Error) => {
          if (this.driver === driver) this.driver = null;
          if (!this.stopped) this.options.log.warn("lost the connection to the Pilot daemon; reconnecting on the next connection", { error: error?.message });
        });
        this.driver = driver;
        this.lastConnectFailure = null;
        this.options.log.info("connected to the Pilot daemon", { address: driver.address, socket: driver.socketPath });
        return driver;
      } catch (e) {
        const error =
          e instanceof NodeError && e.code === "not_running"
            ? new GatewayError("not_running", "the Pilot daemon is not running", "start it with: pilot daemon start")
            : asGatewayError(e);
        this.lastConnectFailure = { at: Date.now(), error };
        throw error;
      } finally {
        this.connecting = null;
      }
    })();
    return this.connecting;
  }

  private async dial(address: string, port: number, secure: boolean): Promise<PilotStream> {
    const driver = await this.getDriver();
    if (secure) return (await driver.dialSecure(address, port, { allowHalfOpen: true })) as PilotStream;
    return (await driver.dial(address, port, { allowHalfOpen: true })) as PilotStream;
  }

  /** The agent's address and hostname, checking that this node can see it. */
  private async resolve(target: string): Promise<{ address: string; hostname: string | null }> {
    const driver = await this.getDriver();
    try {
      const r = (await driver.call("lookup", { target })) as { address?: unknown; hostname?: unknown };
      if (typeof r?.address !== "string") throw new GatewayError("internal", `the daemon's lookup of ${target} has no address`);
      return { address: r.address, hostname: typeof r.hostname === "string" && r.hostname !== "" ? r.hostname : null };
    } catch (e) {
      // The registry is away: a trusted peer's name still resolves locally.
      if (e instanceof NodeError && e.code === "registry_unavailable") {
        const address = await driver.resolve(target);
        return { address, hostname: address === target || /^[0-9.:A-Fa-f]+$/.test(target) ? null : target };
      }
      throw e;
    }
  }

  // ---- mapping ---------------------------------------------------------------

  private async doMap(target: string, ports: readonly number[], ip: string | undefined, secure: boolean) {
    if (this.stopped) throw new GatewayError("not_running", "the gateway is stopping");
    const wanted = [...new Set(ports)].sort((a, b) => a - b);
    if (wanted.length === 0) throw new GatewayError("invalid_argument", "no ports to map");
    const { address, hostname } = await this.resolve(target);
    const existing = this.mappings.get(address);
    if (existing) {
      if (ip !== undefined && ip !== existing.ip) {
        throw new GatewayError("already_exists", `${label(existing)} is already mapped to ${existing.ip}`, `unmap it first: pilot gateway unmap ${existing.ip}`);
      }
      const conflicts = wanted.filter((port) => existing.servers.has(port) && existing.securePorts.has(port) !== secure);
      if (conflicts.length > 0) {
        const list = conflicts.join(",");
        throw new GatewayError(
          "already_exists",
          `port${conflicts.length > 1 ? "s" : ""} ${list} of ${label(existing)} ${conflicts.length > 1 ? "are" : "is"} already mapped on ${existing.ip} ${secure ? "without" : "with"} --secure`,
          `a port is either plain or secure; to change it: pilot gateway unmap ${existing.hostname ?? existing.address} --ports ${list}, then map ${conflicts.length > 1 ? "them" : "it"} again${secure ? " with --secure" : " without --secure"}`,
        );
      }
      if (hostname && !existing.hostname) existing.hostname = hostname;
      const added: number[] = [];
      for (const port of wanted) {
        if (existing.servers.has(port)) continue;
        existing.servers.set(port, await this.listen(existing, port));
        existing.ports = [...existing.ports, port].sort((a, b) => a - b);
        if (secure) existing.securePorts.add(port);
        added.push(port);
      }
      if (added.length > 0) this.options.log.info("ports added to mapping", { ip: existing.ip, address, ports: added, secure });
      return { mapping: info(existing), created: false, added_ports: added };
    }

    const tries = ip !== undefined ? [this.checkExplicit(ip)] : this.automatic();
    let lastError: GatewayError | null = null;
    let attempts = 0;
    for (const candidate of tries) {
      if (++attempts > MAX_ADDRESS_TRIES) break;
      const m: Mapping = {
        ip: candidate,
        address,
        hostname,
        ports: wanted,
        securePorts: new Set(secure ? wanted : []),
        aliasAdded: false,
        servers: new Map(),
        connections: new Set(),
        total: 0,
        failed: 0,
        bytesUp: 0,
        bytesDown: 0,
        mappedAt: new Date(),
      };
      try {
        await this.bringUp(m);
      } catch (e) {
        await this.release(m);
        const error = asGatewayError(e);
        // An automatically chosen address that is busy: try the next one.
        if (ip === undefined && error.code === "port_in_use") {
          lastError = error;
          continue;
        }
        throw error;
      }
      this.mappings.set(address, m);
      this.byIp.set(m.ip, m);
      this.options.log.info("mapped", { ip: m.ip, address, hostname, ports: m.ports, secure, alias: m.aliasAdded });
      return { mapping: info(m), created: true, added_ports: m.ports };
    }
    if (lastError) throw lastError;
    throw new GatewayError("limit_exceeded", `no free address left in ${this.subnet.text}`, "unmap agents you no longer need, or restart the gateway with a larger --subnet");
  }

  private checkExplicit(text: string): string {
    const ip = parseIPv4(text);
    if (ip === null) throw new GatewayError("invalid_argument", `"${text}" is not an IPv4 address`);
    const why = unusableReason(this.subnet, ip);
    if (why) throw new GatewayError("invalid_argument", why, `pick an address inside ${this.subnet.text}, or let the gateway choose`);
    const used = this.byIp.get(formatIPv4(ip));
    if (used) throw new GatewayError("already_exists", `${formatIPv4(ip)} is already mapped to ${label(used)}`, `unmap it first: pilot gateway unmap ${formatIPv4(ip)}`);
    return formatIPv4(ip);
  }

  private *automatic(): Generator<string> {
    for (const n of candidates(this.subnet, (n) => this.byIp.has(formatIPv4(n)))) {
      const ip = formatIPv4(n);
      // Another program's address (a VPN, another gateway): not ours to take.
      if (needsAlias(ip, this.platform) && interfacesWith(ip).length > 0 && !this.options.ledger.aliases.includes(ip)) continue;
      yield ip;
    }
  }

  /** Adds the alias (if needed) and listens on every port of `m`. */
  private async bringUp(m: Mapping): Promise<void> {
    if (needsAlias(m.ip, this.platform)) {
      this.options.ledger.record(m.ip); // before adding: a crash in between still leaves a record
      try {
        const r = await addAlias(m.ip, this.platform);
        m.aliasAdded = r.added;
      } finally {
        if (!m.aliasAdded) this.options.ledger.forget(m.ip);
      }
    }
    for (const port of m.ports) m.servers.set(port, await this.listen(m, port));
  }

  /** Closes listeners and connections of `m` and removes its alias if this gateway added it. */
  private async release(m: Mapping): Promise<{ removed: boolean; error?: string }> {
    for (const server of m.servers.values()) server.close();
    m.servers.clear();
    for (const c of m.connections) c.reset();
    m.connections.clear();
    this.mappings.delete(m.address);
    if (this.byIp.get(m.ip) === m) this.byIp.delete(m.ip);
    if (!m.aliasAdded) return { removed: false };
    try {
      await removeAlias(m.ip, this.platform);
      m.aliasAdded = false;
      this.options.ledger.forget(m.ip);
      this.options.log.info("alias removed", { ip: m.ip });
      return { removed: true };
    } catch (e) {
      this.options.log.error("could not remove an alias; the next gateway start retries", { ip: m.ip, error: (e as Error).message });
      return { removed: false, error: (e as Error).message };
    }
  }

  private listen(m: Mapping, port: number): Promise<net.Server> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(m, port, socket));
    return new Promise((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        server.close();
        if (e.code === "EADDRINUSE") {
          reject(new GatewayError("port_in_use", `TCP port ${port} on ${m.ip} is in use by another program`, `find it with: ss -ltnp 'sport = :${port}'; or map other ports with --ports`));
        } else if (e.code === "EACCES") {
          reject(new GatewayError("unauthorized", `listening on TCP port ${port} needs root (ports below 1024 are privileged)`, "run it with sudo, or use ports from 1024 up, e.g. --ports 8080 (the agent's service must listen on the same Pilot port)"));
        } else if (e.code === "EADDRNOTAVAIL") {
          reject(new GatewayError("internal", `${m.ip} is not an address of this machine`, "the loopback alias is missing; restart the gateway (as root for subnets outside 127.0.0.0/8)"));
        } else {
          reject(new GatewayError("internal", `cannot listen on ${m.ip}:${port}: ${e.message}`));
        }
      };
      server.once("error", onError);
      server.listen({ host: m.ip, port, backlog: 1024 }, () => {
        server.removeListener("error", onError);
        server.on("error", (e) => this.options.log.error("listener failed", { ip: m.ip, port, error: e.message }));
        resolve(server);
      });
    });
  }

  private accept(m: Mapping, port: number, socket: net.Socket): void {
    if (!this.mappings.has(m.address) || this.byIp.get(m.ip) !== m) {
      socket.destroy();
      return;
    }
    m.total++;
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    const entry = { port, reset: () => handle.reset() };
    const handle = bridge(socket, {
      dial: () => this.dial(m.address, port, m.securePorts.has(port)),
      secure: m.securePorts.has(port),
      label: label(m),
      name: m.hostname ?? m.address,
      port,
      onDone: (r) => {
        m.connections.delete(entry);
        m.bytesUp += r.bytesUp;
        m.bytesDown += r.bytesDown;
        if (r.error) {
          m.failed++;
          this.options.log.info(r.answered502 ? "connection failed; answered 502" : "connection failed", { ip: m.ip, port, from, code: r.error.code, error: r.error.message });
        } else {
          this.options.log.debug("connection closed", { ip: m.ip, port, from, up: r.bytesUp, down: r.bytesDown });
        }
      },
    });
    m.connections.add(entry);
  }

  private async doUnmap(target: string, ports?: readonly number[]) {
    const m = await this.find(target);
    const only = ports && ports.length > 0 ? [...new Set(ports)].sort((a, b) => a - b) : null;
    if (only && only.some((p) => !m.servers.has(p))) {
      const missing = only.filter((p) => !m.servers.has(p));
      throw new GatewayError("not_found", `${label(m)} is not mapped on port${missing.length > 1 ? "s" : ""} ${missing.join(",")} (its ports: ${m.ports.join(",")})`, "see the mappings with: pilot gateway list");
    }
    if (only && only.length < m.ports.length) {
      // Some ports: their listeners and connections go; the mapping, its IP and its alias stay.
      const before = info(m);
      for (const port of only) {
        m.servers.get(port)?.close();
        m.servers.delete(port);
        m.securePorts.delete(port);
        for (const c of m.connections) {
          if (c.port !== port) continue;
          c.reset();
          m.connections.delete(c);
        }
      }
      m.ports = m.ports.filter((p) => !only.includes(p));
      this.options.log.info("ports removed from mapping", { ip: m.ip, address: m.address, ports: only });
      return { ...before, connections: m.connections.size, alias_removed: false, removed_ports: only, remaining_ports: [...m.ports] };
    }
    const removedPorts = [...m.ports];
    const r = await this.release(m);
    this.options.log.info("unmapped", { ip: m.ip, address: m.address, alias_removed: r.removed });
    return { ...info(m), connections: 0, alias_removed: r.removed, removed_ports: removedPorts, remaining_ports: [] };
  }

  private async find(target: string): Promise<Mapping> {
    const t = target.trim();
    const ip = parseIPv4(t);
    if (ip !== null && contains(this.subnet, ip)) {
      const m = this.byIp.get(formatIPv4(ip));
      if (m) return m;
      throw noMapping(t);
    }
    for (const m of this.mappings.values()) if (m.hostname === t || m.address === t) return m;
    let address: string;
    try {
      address = await (await this.getDriver()).resolve(t);
    } catch (e) {
      const error = asGatewayError(e);
      if (error.code === "not_found") throw noMapping(t);
      throw error;
    }
    const m = this.mappings.get(address);
    if (!m) throw noMapping(t);
    return m;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}

function noMapping(target: string): GatewayError {
  return new GatewayError("not_found", `no mapping for ${target}`, "see the mappings with: pilot gateway list");
}

function label(m: { hostname: string | null; address: string }): string {
  return m.hostname ? `${m.hostname} (${m.address})` : m.address;
}

function info(m: Mapping): MappingInfo {
  return {
    local_ip: m.ip,
    pilot_addr: m.address,
    hostname: m.hostname,
    ports: [...m.ports],
    secure_ports: m.ports.filter((p) => m.securePorts.has(p)),
    secure: m.ports.length > 0 && m.ports.every((p) => m.securePorts.has(p)),
    connections: m.connections.size,
    total_connections: m.total,
    failed_connections: m.failed,
    bytes_up: m.bytesUp,
    bytes_down: m.bytesDown,
    mapped_at: m.mappedAt.toISOString(),
  };
}
