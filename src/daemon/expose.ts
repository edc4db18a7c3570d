/**
 * Exposed ports: `pilot expose PORT --to HOST:PORT`. The daemon accepts
 * Pilot streams on the virtual port and bridges each one to a TCP
 * connection to the target (a service that knows nothing of Pilot, such as
 * a Python agent on 127.0.0.1:8000), inside the daemon, with no extra hop.
 *
 * - Trust: an exposed port is an ordinary listener, so the data plane admits
 *   streams to it only from trusted nodes (anyone, for a public node).
 * - Targets: loopback only (127.0.0.0/8, ::1, localhost) unless the expose
 *   was made with `allowRemoteTarget`, so a trusted peer cannot use this
 *   machine as a proxy into its network by default.
 * - Bridging: both directions with backpressure (a full Pilot send buffer
 *   pauses the TCP socket; a TCP socket that does not drain stops reading the
 *   stream, whose window then closes), half-close carried both ways (FIN <->
 *   FIN), errors carried both ways (a refused or reset TCP connection resets
 *   the stream; a reset or untrusted stream destroys the TCP connection). No
 *   idle timeout: quiet SSE streams live as long as both ends do.
 * - State: `$PILOT_HOME/expose.json` (atomic writes), restored at start.
 *
 * Daemon calls (see `methods()`): `expose {port, to, allow_remote_target?}`,
 * `expose_list`, `expose_remove {port}`.
 */
import { existsSync, readFileSync, renameSync } from "node:fs";
import net from "node:net";
import { writeFileAtomic } from "../util/atomic-file.ts";
import type { Logger } from "../util/log.ts";
import { NodeError, type PortBinding, type StreamHandle } from "./local-node.ts";

export interface ExposeTarget {
  readonly host: string;
  readonly port: number;
}

export interface ExposeHost {
  listen(port: number, onAccept: (stream: StreamHandle) => void): PortBinding;
}

export interface ExposeOptions {
  readonly host: ExposeHost;
  /** Where exposes are kept; null keeps them in memory only. */
  readonly file: string | null;
  readonly log: Logger;
  /** Opens the TCP connection for one bridged stream (tests may replace it). */
  readonly connect?: (target: ExposeTarget) => net.Socket;
}

/** One expose as `expose_list` reports it. */
export interface ExposeInfo {
  port: number;
  target: string;
  allow_remote_target: boolean;
  created_at: string;
  /** false when the port could not be bound at start (see `error`). */
  active: boolean;
  error?: string;
  connections: number;
  total_connections: number;
  failed_connections: number;
  bytes_in: number;
  bytes_out: number;
}

interface Expose {
  readonly port: number;
  readonly target: ExposeTarget;
  readonly allowRemoteTarget: boolean;
  readonly createdAt: number;
  binding: PortBinding | null;
  error: string | null;
  readonly bridges: Set<Bridge>;
  total: number;
  failed: number;
  /** Bytes from Pilot to the target, and back. */
  bytesIn: number;
  bytesOut: number;
}

const FILE_VERSION = 1;
/** How much one read takes from a stream before handing it to the TCP socket. */
const READ_CHUNK = 64 * 1024;

/** Parses `HOST:PORT`, `[V6]:PORT` or a bare `PORT` (meaning 127.0.0.1). Throws invalid_argument. */
export function parseExposeTarget(text: string): ExposeTarget {
  const t = text.trim();
  const bare = /^[0-9]{1,5}$/.test(t);
  const m = bare ? null : /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):([0-9]{1,5})$/.exec(t);
  const port = bare ? Number(t) : m ? Number(m[3]) : NaN;
  if ((!bare && !m) || !(port >= 1 && port <= 65535)) {
    throw new NodeError("invalid_argument", `"${text}" is not HOST:PORT`, "for example --to 127.0.0.1:8000 (or just --to 8000 for this machine)");
  }
  const host = bare ? "127.0.0.1" : (m![1] ?? m![2]!);
  if (m?.[1] !== undefined && net.isIPv6(host) === false) throw new NodeError("invalid_argument", `"${host}" is not an IPv6 address`);
  return { host, port };
}

export function formatTarget(t: ExposeTarget): string {
  return t.host.includes(":") ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** Loopback by its spelling alone (no DNS): localhost, 127.0.0.0/8, ::1 (also IPv4-mapped). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost") return true;
  if (net.isIPv4(h)) return h.startsWith("127.");
  if (net.isIPv6(h)) {
    const list = new net.BlockList();
    list.addAddress("::1", "ipv6");
    list.addSubnet("::ffff:127.0.0.0", 104, "ipv6");
    return list.check(h, "ipv6");
  }
  return false;
}

function defaultConnect(target: ExposeTarget): net.Socket {
  return net.createConnection({ host: target.host, port: target.port, allowHalfOpen: true });
}

export class ExposeManager {
  private readonly exposes = new Map<number, Expose>();
  private readonly log: Logger;
  private readonly connect: (target: ExposeTarget) => net.Socket;
  private closed = false;

  constructor(private readonly options: ExposeOptions) {
    this.log = options.log;
    this.connect = options.connect ?? defaultConnect;
  }

  /** The daemon calls this module answers. */
  methods(): Record<string, (params: Record<string, unknown>) => unknown> {
    return {
      expose: (p) => this.addFromParams(p),
      expose_list: () => {
        const exposes = this.list();
        return { exposes, total: exposes.length };
      },
      expose_remove: (p) => this.remove(portParam(p.port)),
    };
  }

  private addFromParams(p: Record<string, unknown>): ExposeInfo {
    if (typeof p.to !== "string" || p.to === "") throw new NodeError("invalid_argument", 'missing "to" (the target HOST:PORT)');
    if (p.allow_remote_target !== undefined && typeof p.allow_remote_target !== "boolean") throw new NodeError("invalid_argument", "allow_remote_target must be true or false");
    return this.add(portParam(p.port), parseExposeTarget(p.to), p.allow_remote_target === true);
  }

  /** Binds `port` and bridges its streams to `target`; persists. Errors: invalid_argument, already_exists, port_in_use. */
  add(port: number, target: ExposeTarget, allowRemoteTarget = false): ExposeInfo {
    if (this.closed) throw new NodeError("closed", "the daemon is shutting down");
    if (!allowRemoteTarget && !isLoopbackHost(target.host)) {
      throw new NodeError(
        "invalid_argument",
        `refusing to expose port ${port} to ${formatTarget(target)}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed, so that trusted peers cannot use this machine as a proxy`,
        `if every node you trust may reach ${formatTarget(target)} through this machine, add --allow-remote-target`,
      );
    }
    const existing = this.exposes.get(port);
    if (existing) {
      throw new NodeError("already_exists", `port ${port} is already exposed (to ${formatTarget(existing.target)})`, `remove it first with: pilot expose remove ${port}`);
    }
    const e = this.newExpose(port, target, allowRemoteTarget, Date.now());
    e.binding = this.bind(e); // throws port_in_use: nothing is saved then
    this.exposes.set(port, e);
    this.save();
    this.log.info("port exposed", { port, target: formatTarget(target), allow_remote_target: allowRemoteTarget });
    return this.info(e);
  }

  /** Unbinds `port`, resets its open connections, forgets it. Errors: not_found. */
  remove(port: number): ExposeInfo & { connections_closed: number } {
    const e = this.exposes.get(port);
    if (!e) throw new NodeError("not_found", `port ${port} is not exposed`, "see the exposed ports with: pilot expose list");
    e.binding?.close();
    e.binding = null;
    const open = [...e.bridges];
    for (const b of open) b.reset();
    this.exposes.delete(port);
    this.save();
    this.log.info("expose removed", { port, target: formatTarget(e.target), connections_closed: open.length });
    return { ...this.info(e), active: false, connections_closed: open.length };
  }

  list(): ExposeInfo[] {
    return [...this.exposes.values()].sort((a, b) => a.port - b.port).map((e) => this.info(e));
  }

  /** Loads the saved exposes and binds each; one that cannot be bound stays listed with its error. */
  restore(): { restored: number; failed: number } {
    const file = this.options.file;
    if (!file || !existsSync(file)) return { restored: 0, failed: 0 };
    let entries: { port: number; target: ExposeTarget; allowRemoteTarget: boolean; createdAt: number }[];
    try {
      entries = parseFile(readFileSync(file, "utf8"));
    } catch (e) {
      const aside = `${file}.bad`;
      try {
        renameSync(file, aside);
      } catch {
        // leave it; the next save replaces it
      }
      this.log.warn("the expose file is damaged; starting with no exposed ports", { file, moved_to: aside, error: (e as Error).message });
      return { restored: 0, failed: 0 };
    }
    let restored = 0;
    let failed = 0;
    for (const s of entries) {
      if (this.exposes.has(s.port)) continue;
      const e = this.newExpose(s.port, s.target, s.allowRemoteTarget, s.createdAt);
      this.exposes.set(s.port, e);
      try {
        e.binding = this.bind(e);
        restored++;
      } catch (error) {
        e.error = (error as Error).message;
        failed++;
        this.log.warn("could not restore an exposed port", { port: s.port, target: formatTarget(s.target), error: e.error });
      }
    }
    if (restored + failed > 0) this.log.info("exposed ports restored", { restored, failed });
    return { restored, failed };
  }

  /** Daemon shutdown: unbind everything and drop the TCP side of open bridges (the data plane closes the streams). */
  close(): void {
    this.closed = true;
    for (const e of this.exposes.values()) {
      e.binding?.close();
      e.binding = null;
      for (const b of [...e.bridges]) b.reset();
    }
  }

  private newExpose(port: number, target: ExposeTarget, allowRemoteTarget: boolean, createdAt: number): Expose {
    return { port, target, allowRemoteTarget, createdAt, binding: null, error: null, bridges: new Set(), total: 0, failed: 0, bytesIn: 0, bytesOut: 0 };
  }

  private bind(e: Expose): PortBinding {
    return this.options.host.listen(e.port, (stream) => {
      if (this.exposes.get(e.port) !== e || this.closed) {
        stream.abort();
        return;
      }
      e.total++;
      const b = new Bridge(stream, e, this.connect, this.log);
      e.bridges.add(b);
      b.onDone = () => e.bridges.delete(b);
    });
  }

  private info(e: Expose): ExposeInfo {
    const info: ExposeInfo = {
      port: e.port,
      target: formatTarget(e.target),
      allow_remote_target: e.allowRemoteTarget,
      created_at: new Date(e.createdAt).toISOString(),
      active: e.binding !== null,
      connections: e.bridges.size,
      total_connections: e.total,
      failed_connections: e.failed,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
    };
    if (e.error) info.error = e.error;
    return info;
  }

  private save(): void {
    const file = this.options.file;
    if (!file) return;
    const exposes = [...this.exposes.values()]
      .sort((a, b) => a.port - b.port)
      .map((e) => ({ port: e.port, target: formatTarget(e.target), allow_remote_target: e.allowRemoteTarget, created_at: e.createdAt }));
    writeFileAtomic(file, JSON.stringify({ version: FILE_VERSION, exposes }, null, 2) + "\n");
  }
}

function portParam(v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) throw new NodeError("invalid_argument", `port must be 1-65535, got ${JSON.stringify(v)}`);
  return v;
}

function parseFile(text: string): { port: number; target: ExposeTarget; allowRemoteTarget: boolean; createdAt: number }[] {
  const data = JSON.parse(text);
  if (data?.version !== FILE_VERSION || !Array.isArray(data.exposes)) throw new Error(`not an expose file (version ${FILE_VERSION})`);
  return data.exposes.map((x: any) => {
    const port = portParam(x?.port);
    const target = parseExposeTarget(String(x?.target ?? ""));
    const allowRemoteTarget = x.allow_remote_target === true;
    // A hand-edited file is held to the same rule as the command.
    if (!allowRemoteTarget && !isLoopbackHost(target.host)) throw new Error(`port ${port}: ${formatTarget(target)} is not a loopback target and allow_remote_target is not set`);
    return { port, target, allowRemoteTarget, createdAt: Number(x.created_at) || Date.now() };
  });
}

/** One Pilot stream joined to one TCP connection. */
class Bridge {
  private readonly socket: net.Socket;
  private connected = false;
  /** TCP bytes the stream's send buffer has not taken yet (the TCP socket is paused meanwhile). */
  private pending: Uint8Array | null = null;
  private tcpEnded = false;
  private streamEnded = false;
  private shutdownSent = false;
  private tcpBlocked = false;
  private streamClosed = false;
  private finished = false;
  onDone: (() => void) | null = null;

  constructor(
    private readonly stream: StreamHandle,
    private readonly expose: Expose,
    connect: (target: ExposeTarget) => net.Socket,
    private readonly log: Logger,
  ) {
    this.socket = connect(expose.target);
    this.socket.setNoDelay(true);
    stream.onEvent = (e) => {
      switch (e.type) {
        case "readable":
          return this.toTcp();
        case "writable":
          return this.toPilot();
        case "end":
          this.streamEnded = true;
          return this.toTcp();
        case "closed":
          this.streamClosed = true;
          if (e.error) this.destroySocket();
          else if (!this.socket.destroyed) this.socket.end();
          return this.settle();
      }
    };
    this.socket.on("connect", () => {
      this.connected = true;
      this.toTcp();
    });
    this.socket.on("data", (chunk: Buffer) => this.fromTcp(chunk));
    this.socket.on("end", () => {
      this.tcpEnded = true;
      this.toPilot();
    });
    this.socket.on("drain", () => {
      this.tcpBlocked = false;
      this.toTcp();
    });
    this.socket.on("error", (error: NodeJS.ErrnoException) => {
      if (!this.connected) {
        this.expose.failed++;
        this.log.info("exposed port: the target refused the connection; resetting the Pilot stream", { port: this.expose.port, target: formatTarget(this.expose.target), error: error.code ?? error.message });
      } else {
        this.log.debug("exposed port: the target connection failed; resetting the Pilot stream", { port: this.expose.port, error: error.code ?? error.message });
      }
      this.abortStream();
    });
    this.socket.on("close", (hadError: boolean) => {
      // After the service's FIN a clean close is normal, even with its last bytes still on their
      // way into the stream (they follow, then our FIN). Any other close resets the stream.
      if (hadError || !this.tcpEnded) this.abortStream();
      this.settle();
    });
  }

  /** Pilot -> TCP: read while the socket accepts; FIN follows the last byte. */
  private toTcp(): void {
    if (!this.connected || this.tcpBlocked || this.socket.destroyed) return;
    for (;;) {
      const chunk = this.stream.read(READ_CHUNK);
      if (!chunk) break;
      this.expose.bytesIn += chunk.length;
      if (!this.socket.write(chunk)) {
        this.tcpBlocked = true;
        return;
      }
    }
    if (this.streamEnded && !this.socket.writableEnded) this.socket.end();
  }

  private fromTcp(chunk: Uint8Array): void {
    if (this.streamClosed) return;
    const n = this.stream.write(chunk);
    this.expose.bytesOut += n;
    if (n < chunk.length) {
      this.pending = chunk.subarray(n);
      this.socket.pause();
    }
  }

  /** TCP -> Pilot, once the stream has room again; the TCP FIN becomes the stream's FIN. */
  private toPilot(): void {
    if (this.streamClosed) return;
    if (this.pending) {
      const n = this.stream.write(this.pending);
      this.expose.bytesOut += n;
      if (n < this.pending.length) {
        this.pending = this.pending.subarray(n);
        return;
      }
      this.pending = null;
      if (!this.tcpEnded) this.socket.resume();
    }
    if (this.tcpEnded && !this.shutdownSent) {
      this.shutdownSent = true;
      this.stream.shutdown();
    }
  }

  private abortStream(): void {
    if (this.streamClosed) return;
    this.streamClosed = true;
    this.stream.abort();
  }

  private destroySocket(): void {
    if (this.socket.destroyed) return;
    const s = this.socket as net.Socket & { resetAndDestroy?: () => void };
    if (typeof s.resetAndDestroy === "function" && this.connected) s.resetAndDestroy();
    else s.destroy();
  }

  /** Expose removed or daemon stopping: reset both sides. */
  reset(): void {
    this.abortStream();
    this.destroySocket();
    this.settle();
  }

  /** Done once both sides are finished: the stream closed (or was reset) and the socket is gone. */
  private settle(): void {
    if (this.finished || !this.streamClosed || !this.socket.destroyed) return;
    this.finished = true;
    this.onDone?.();
  }
}
