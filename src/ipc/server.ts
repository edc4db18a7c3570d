/**
 * The daemon's IPC server: a thin shell that serves one LocalNode to local
 * apps over a unix stream socket. It turns frames into LocalNode calls and
 * LocalNode callbacks into frames, and owns no protocol state beyond the
 * bookkeeping of which client holds which stream, port and binding.
 *
 * Isolation: every stream has its own credit in each direction. The server
 * reads from a StreamHandle only while the client has credit for it and
 * forwards client bytes to the handle only as the handle takes them, granting
 * credit back for exactly what was taken. A client that stops reading one
 * stream stalls that stream only; a client that misbehaves (bad frame, bytes
 * beyond its credit) is disconnected alone, and the reason is logged.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Socket, UnixSocketListener } from "bun";
import { NodeError, type LocalNode, type PortBinding, type StreamEvent, type StreamHandle } from "../daemon/local-node.ts";
import { formatAddress, parseAddress, type Address } from "../protocol/address.ts";
import type { EventFeed } from "../shared/events.ts";
import type { Logger } from "../util/log.ts";
import { toWireError } from "./errors.ts";
import {
  decodeFrame,
  encodeFrame,
  FrameReader,
  FrameType,
  IPC_MIN_PROTOCOL_VERSION,
  IPC_PROTOCOL_VERSION,
  MAX_DATA_CHUNK,
  MAX_FRAME_LENGTH,
  STREAM_WINDOW,
  StreamOptionCode,
  type Frame,
} from "./frames.ts";
import { ClientEvents, DEFAULT_EVENT_PUSH_LIMITS, publishAppEvent, recentEvents, type EventPushLimits } from "./event-push.ts";
import { MAX_SOCKET_PATH_BYTES } from "./paths.ts";
import { FrameWriter } from "./writer.ts";

export interface IpcServerOptions {
  node: LocalNode;
  /** The unix socket path (see `resolveSocketPath`). Its directory is created (mode 0700) if missing. */
  socketPath: string;
  logger?: Logger;
  /** Most requests one client may have in flight; more are answered with `limit_exceeded`. */
  maxInflightRequests?: number;
  /** Above this many unsent bytes to one client, its streams pause, datagrams to it are dropped and its events queue. */
  clientHighWater?: number;
  /** Bounds on each client's event subscriptions (docs/IPC.md "Events"). */
  eventLimits?: Partial<EventPushLimits>;
  /** The webhook's delivery counters for `events_status` (null: no webhook configured). */
  webhookStatus?: () => unknown;
  /** Calls the daemon's shell answers rather than the node (`dashboard`: the local page's address). */
  methods?: Readonly<Record<string, (params: Record<string, unknown>) => unknown>>;
}

export interface IpcServer {
  readonly socketPath: string;
  /** Connected clients now. */
  readonly clientCount: number;
  /** Stops accepting, disconnects every client (closing its streams and ports) and removes the socket file. */
  close(): Promise<void>;
}

/** IPC methods the server answers itself; every other method goes to `LocalNode.call`. */
export const IPC_METHODS = [
  "hello",
  "dial",
  "listen",
  "unlisten",
  "bind_datagrams",
  "unbind_datagrams",
  "events_subscribe",
  "events_unsubscribe",
  "events_recent",
  "events_publish",
  "events_status",
] as const;

const DEFAULT_MAX_INFLIGHT = 1024;
const PROBE_TIMEOUT_MS = 1000;

type ClientSocket = Socket<ClientSession | undefined>;

/**
 * Starts serving `node` on `socketPath`. The socket file is created with mode
 * 0600. A socket file left by a crashed daemon (nobody answers a connect) is
 * replaced; a live one fails with `already_exists`.
 */
export async function startIpcServer(options: IpcServerOptions): Promise<IpcServer> {
  const { socketPath } = options;
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new NodeError(
      "invalid_argument",
      `IPC socket path is ${Buffer.byteLength(socketPath)} bytes; unix sockets allow at most ${MAX_SOCKET_PATH_BYTES}`,
      "set PILOT_SOCKET (or PILOT_HOME) to a shorter path",
    );
  }
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  await clearStaleSocket(socketPath);

  const sessions = new Set<ClientSession>();
  let nextClientId = 1;
  let listener: UnixSocketListener<ClientSession | undefined>;
  const previousUmask = process.umask(0o177);
  try {
    listener = Bun.listen<ClientSession | undefined>({
      unix: socketPath,
      socket: {
        open(socket) {
          const session = new ClientSession(nextClientId++, socket, options, () => sessions.delete(session), () => sessions);
          sessions.add(session);
          socket.data = session;
        },
        data(socket, chunk) {
          socket.data?.receive(chunk);
        },
        drain(socket) {
          socket.data?.writer.drain();
        },
        close(socket) {
          socket.data?.shutdown("disconnected");
        },
        error(socket, error) {
          options.logger?.debug("ipc client socket error", { client: socket.data?.id, error });
          socket.data?.shutdown("socket error");
        },
      },
    });
  } catch (error) {
    throw new NodeError("internal", `cannot listen on ${socketPath}: ${(error as Error).message}`);
  } finally {
    process.umask(previousUmask);
  }
  // Belt and braces: the umask already made it 0600.
  chmodSync(socketPath, 0o600);
  options.logger?.info("ipc listening", { socket: socketPath });

  let closed = false;
  return {
    socketPath,
    get clientCount() {
      return sessions.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      listener.stop(true);
      for (const session of [...sessions]) session.shutdown("server closing");
      try {
        unlinkSync(socketPath);
      } catch {
        // Already gone.
      }
    },
  };
}

/** Removes a socket file nobody answers on; refuses a live one or a non-socket. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(socketPath).isSocket();
  } catch {
    return; // Nothing there.
  }
  if (!isSocket) {
    throw new NodeError("invalid_argument", `${socketPath} exists and is not a socket`, "remove it or choose another PILOT_SOCKET");
  }
  if (await probe(socketPath)) {
    throw new NodeError("already_exists", `a Pilot daemon is already listening on ${socketPath}`, "stop it with `pilot daemon stop`, or use another PILOT_HOME");
  }
  unlinkSync(socketPath);
}

/** True if something accepts a connection on the socket. */
async function probe(socketPath: string): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const attempt = Bun.connect({ unix: socketPath, socket: { data() {} } }).then(
      (socket) => {
        socket.end();
        return true;
      },
      (error: NodeJS.ErrnoException) => {
        if (error.code === "ECONNREFUSED" || error.code === "ENOENT") return false;
        throw new NodeError("internal", `cannot probe ${socketPath}: ${error.message}`);
      },
    );
    const timeout = new Promise<boolean>((resolve) => {
      // A listener that does not accept within the timeout is wedged: treat it as live, never delete it.
      timer = setTimeout(() => resolve(true), PROBE_TIMEOUT_MS);
    });
    return await Promise.race([attempt, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------

/** One stream as one client holds it. */
class ServerStream {
  /** Bytes the client can still take (daemon→client credit). */
  credit = STREAM_WINDOW;
  /** Client bytes the handle has not taken yet, oldest first. */
  pending: Uint8Array[] = [];
  pendingBytes = 0;
  /** Bytes the handle took that have not been credited back yet. */
  uncredited = 0;
  /** The client sent FIN: shut down once `pending` is empty. */
  finRequested = false;
  shutdownDone = false;
  /** The client sent CLOSE: close once `pending` is empty. The client has forgotten the id. */
  closeRequested = false;
  /** The handle reported "end": send FIN once everything before it went out. */
  endSeen = false;
  finSent = false;
  /** The handle reported a graceful "closed": send CLOSE once drained. */
  closedSeen = false;
  /** Removed from the session (no more frames to the client). */
  gone = false;

  constructor(
    readonly id: number,
    readonly handle: StreamHandle,
  ) {}
}

class ClientSession {
  readonly writer: FrameWriter;
  private readonly reader = new FrameReader(MAX_FRAME_LENGTH);
  private readonly streams = new Map<number, ServerStream>();
  private readonly listeners = new Map<number, PortBinding>();
  private readonly datagramBindings = new Map<number, PortBinding>();
  /** Streams the client is done with whose queued bytes are still going into the handle. */
  private readonly draining = new Set<ServerStream>();
  private readonly creditDirty = new Set<ServerStream>();
  private readonly paused = new Set<ServerStream>();
  private nextStreamId = 1;
  private nextListenerId = 1;
  private nextBindingId = 1;
  private inflight = 0;
  private closed = false;
  private readonly node: LocalNode;
  private readonly logger: Logger | undefined;
  private readonly maxInflight: number;
  private readonly eventLimits: EventPushLimits;
  private readonly webhookStatus: (() => unknown) | undefined;
  private readonly shellMethods: IpcServerOptions["methods"];
  droppedDatagrams = 0;
  /** The IPC protocol agreed in `hello` (1 until then: no EVENT frames). */
  protocol = 1;
  /** This client's event subscriptions, once it has made one. */
  events: ClientEvents | null = null;

  constructor(
    readonly id: number,
    private readonly socket: ClientSocket,
    options: IpcServerOptions,
    private readonly onGone: () => void,
    private readonly allSessions: () => Iterable<ClientSession>,
  ) {
    this.node = options.node;
    this.logger = options.logger;
    this.maxInflight = options.maxInflightRequests ?? DEFAULT_MAX_INFLIGHT;
    this.eventLimits = { ...DEFAULT_EVENT_PUSH_LIMITS, ...options.eventLimits };
    this.webhookStatus = options.webhookStatus;
    this.shellMethods = options.methods;
    this.writer = new FrameWriter(socket, options.clientHighWater ?? 1024 * 1024);
    this.writer.beforeFlush = () => this.flushCredits();
    this.writer.onWritable = () => {
      this.resumePaused();
      this.events?.pump();
    };
    this.writer.onDead = () => this.shutdown("socket closed");
  }

  receive(chunk: Uint8Array): void {
    if (this.closed) return;
    this.reader.push(chunk);
    while (!this.closed) {
      const raw = this.reader.next();
      if (raw === null) return;
      if (!raw.ok) return this.protocolError(raw.error.code, raw.error.message);
      const frame = decodeFrame(raw.value.type, raw.value.payload, "client");
      if (!frame.ok) return this.protocolError(frame.error.code, frame.error.message);
      this.handle(frame.value);
    }
  }

  /** Closes this client only: its streams are closed, its ports unbound. */
  shutdown(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.writer.discard();
    this.socket.end();
    this.events?.close();
    for (const binding of this.listeners.values()) binding.close();
    for (const binding of this.datagramBindings.values()) binding.close();
    this.listeners.clear();
    this.datagramBindings.clear();
    for (const stream of this.streams.values()) {
      stream.gone = true;
      stream.closeRequested = true;
      this.settleWrites(stream);
    }
    this.streams.clear();
    this.paused.clear();
    this.creditDirty.clear();
    this.logger?.debug("ipc client gone", { client: this.id, reason });
    this.onGone();
  }

  private protocolError(code: string, message: string): void {
    this.logger?.warn("ipc client sent a malformed frame; disconnecting it", { client: this.id, code, message });
    this.shutdown(`protocol error: ${code}`);
  }

  private handle(frame: Frame): void {
    switch (frame.type) {
      case FrameType.Request:
        void this.request(frame.id, frame.method, frame.params);
        return;
      case FrameType.Data:
        return this.onClientData(frame.stream, frame.data);
      case FrameType.Credit: {
        const stream = this.streams.get(frame.stream);
        if (!stream) return;
        stream.credit += frame.bytes;
        if (stream.credit > STREAM_WINDOW) {
          return this.protocolError("credit_overflow", `stream ${frame.stream} credited beyond its window`);
        }
        this.pump(stream);
        return;
      }
      case FrameType.Fin: {
        const stream = this.streams.get(frame.stream);
        if (!stream || stream.finRequested) return;
        stream.finRequested = true;
        this.settleWrites(stream);
        return;
      }
      case FrameType.Close: {
        const stream = this.streams.get(frame.stream);
        if (!stream) return;
        this.forget(stream);
        stream.closeRequested = true;
        this.settleWrites(stream);
        return;
      }
      case FrameType.Reset: {
        const stream = this.streams.get(frame.stream);
        if (!stream) return;
        this.forget(stream);
        stream.handle.onEvent = null;
        stream.handle.abort();
        return;
      }
      case FrameType.StreamOption: {
        const stream = this.streams.get(frame.stream);
        if (stream && frame.option === StreamOptionCode.NoDelay) stream.handle.setNoDelay(frame.value !== 0);
        return;
      }
      case FrameType.SendDatagram:
        void this.sendDatagram(frame.id, frame.srcPort, frame.dstAddress, frame.dstPort, frame.data);
        return;
      default:
        return this.protocolError("unexpected_type", `frame type ${frame.type} is not for the daemon`);
    }
  }

  // -- streams --------------------------------------------------------------

  private register(handle: StreamHandle): ServerStream {
    const stream = new ServerStream(this.nextStreamId++, handle);
    this.streams.set(stream.id, stream);
    return stream;
  }

  /** After the id went out to the client: start listening to the handle. */
  private attach(stream: ServerStream): void {
    stream.handle.onEvent = (event) => this.onStreamEvent(stream, event);
    this.pump(stream);
  }

  private onStreamEvent(stream: ServerStream, event: StreamEvent): void {
    switch (event.type) {
      case "readable":
        return this.pump(stream);
      case "writable":
        return this.settleWrites(stream);
      case "end":
        stream.endSeen = true;
        return this.pump(stream);
      case "closed":
        if (event.error) {
          stream.pending = [];
          stream.pendingBytes = 0;
          stream.handle.onEvent = null;
          this.draining.delete(stream);
          if (!stream.gone) {
            this.forget(stream);
            const reset = encodeFrame({ type: FrameType.Reset, stream: stream.id, code: event.error.code, message: event.error.message });
            if (reset.ok) this.writer.append(reset.value);
          }
          return;
        }
        stream.closedSeen = true;
        return this.pump(stream);
    }
  }

  /** Moves bytes from the handle to the client while the client has credit. */
  private pump(stream: ServerStream): void {
    if (stream.gone) return;
    while (stream.credit > 0) {
      if (this.writer.backlog > this.writer.highWater) {
        this.paused.add(stream);
        return;
      }
      const chunk = stream.handle.read(Math.min(stream.credit, MAX_DATA_CHUNK));
      if (chunk === null || chunk.length === 0) {
        // Everything readable has gone out: now the end and the close can follow.
        if (stream.endSeen && !stream.finSent) {
          stream.finSent = true;
          this.writer.appendStreamFrame(FrameType.Fin, stream.id);
        }
        if (stream.closedSeen) {
          this.forget(stream);
          stream.handle.onEvent = null;
          this.writer.appendStreamFrame(FrameType.Close, stream.id);
        }
        return;
      }
      stream.credit -= chunk.length;
      this.writer.appendData(stream.id, chunk);
    }
  }

  private resumePaused(): void {
    if (this.paused.size === 0) return;
    const streams = [...this.paused];
    this.paused.clear();
    for (const stream of streams) this.pump(stream);
  }

  private onClientData(id: number, data: Uint8Array): void {
    const stream = this.streams.get(id);
    if (!stream) return; // Raced with a close or reset: those bytes have nowhere to go.
    if (stream.finRequested) return this.protocolError("data_after_fin", `DATA on stream ${id} after FIN`);
    if (stream.pendingBytes + stream.uncredited + data.length > STREAM_WINDOW) {
      return this.protocolError("credit_exceeded", `stream ${id} sent beyond its credit`);
    }
    if (stream.pendingBytes === 0) {
      const taken = stream.handle.write(data);
      this.credit(stream, taken);
      if (taken >= data.length) return;
      data = data.subarray(taken);
    }
    // Chunks handed to `receive` are fresh buffers that nobody else writes to, so views can be kept.
    stream.pending.push(data);
    stream.pendingBytes += data.length;
  }

  /** Feeds queued client bytes to the handle; then a requested FIN or close goes through. */
  private settleWrites(stream: ServerStream): void {
    while (stream.pending.length > 0) {
      const head = stream.pending[0]!;
      const taken = stream.handle.write(head);
      stream.pendingBytes -= taken;
      this.credit(stream, taken);
      if (taken < head.length) {
        stream.pending[0] = head.subarray(taken);
        if (stream.closeRequested) {
          // Keep listening for "writable" after the client has gone.
          this.draining.add(stream);
          if (stream.gone) stream.handle.onEvent = (event) => this.onDrainingEvent(stream, event);
        }
        return;
      }
      stream.pending.shift();
    }
    this.draining.delete(stream);
    if (stream.closeRequested) {
      stream.handle.onEvent = null;
      stream.handle.close();
    } else if (stream.finRequested && !stream.shutdownDone) {
      stream.shutdownDone = true;
      stream.handle.shutdown();
    }
  }

  private onDrainingEvent(stream: ServerStream, event: StreamEvent): void {
    if (event.type === "writable") this.settleWrites(stream);
    else if (event.type === "closed") {
      this.draining.delete(stream);
      stream.handle.onEvent = null;
    }
  }

  private credit(stream: ServerStream, bytes: number): void {
    if (bytes <= 0 || stream.gone) return;
    stream.uncredited += bytes;
    this.creditDirty.add(stream);
    this.writer.scheduleFlush();
  }

  private flushCredits(): void {
    for (const stream of this.creditDirty) {
      if (stream.uncredited > 0 && !stream.gone) this.writer.appendStreamFrame(FrameType.Credit, stream.id, stream.uncredited);
      stream.uncredited = 0;
    }
    this.creditDirty.clear();
  }

  private forget(stream: ServerStream): void {
    stream.gone = true;
    this.streams.delete(stream.id);
    this.paused.delete(stream);
    this.creditDirty.delete(stream);
  }

  // -- requests -------------------------------------------------------------

  private async request(id: number, method: string, params: Record<string, unknown>): Promise<void> {
    if (this.inflight >= this.maxInflight) {
      return this.respondError(id, new NodeError("limit_exceeded", `more than ${this.maxInflight} requests in flight`, "wait for answers before sending more"));
    }
    this.inflight++;
    try {
      switch (method) {
        case "hello":
          return this.respond(id, this.hello(params));
        case "dial":
          return await this.dial(id, params);
        case "listen":
          return this.respond(id, this.listen(params));
        case "unlisten":
          return this.respond(id, this.unbind(this.listeners, params.listener, "listener"));
        case "bind_datagrams":
          return this.respond(id, this.bindDatagrams(params));
        case "unbind_datagrams":
          return this.respond(id, this.unbind(this.datagramBindings, params.binding, "binding"));
        case "events_subscribe": {
          const events = this.clientEvents();
          const r = events.subscribe(params);
          this.respond(id, r);
          return events.start(r.subscription);
        }
        case "events_unsubscribe":
          return this.respond(id, this.clientEvents().unsubscribe(params));
        case "events_recent":
          return this.respond(id, recentEvents(this.feed(), params));
        case "events_publish":
          return this.respond(id, publishAppEvent(this.feed(), params));
        case "events_status":
          return this.respond(id, this.eventsStatus());
        default: {
          const own = this.shellMethods && Object.hasOwn(this.shellMethods, method) ? this.shellMethods[method] : undefined;
          const result = own ? await own(params) : await this.node.call(method, params);
          return this.respond(id, result);
        }
      }
    } catch (error) {
      if (!(error instanceof NodeError)) this.logger?.warn("ipc request failed unexpectedly", { client: this.id, method, error });
      this.respondError(id, error);
    } finally {
      this.inflight--;
    }
  }

  private respond(id: number, result: unknown): void {
    if (this.closed) return;
    const frame = encodeFrame({ type: FrameType.Response, id, ok: true, result: result ?? null });
    if (frame.ok) return this.writer.append(frame.value);
    this.logger?.warn("ipc result cannot be sent", { client: this.id, code: frame.error.code, message: frame.error.message });
    this.respondError(id, new NodeError(frame.error.code === "too_large" ? "limit_exceeded" : "internal", frame.error.message));
  }

  private respondError(id: number, error: unknown): void {
    if (this.closed) return;
    const frame = encodeFrame({ type: FrameType.Response, id, ok: false, error: toWireError(error) });
    if (frame.ok) this.writer.append(frame.value);
  }

  /**
   * Protocol negotiation: the client says the newest version it speaks
   * (`protocol`) and optionally the oldest (`min_protocol`, default: the
   * same); the answer is the newest both speak. No `protocol`: version 1.
   */
  private hello(params: Record<string, unknown>): unknown {
    const asked = params.protocol === undefined ? 1 : params.protocol;
    const min = params.min_protocol === undefined ? asked : params.min_protocol;
    const version = typeof asked === "number" && Number.isSafeInteger(asked) ? Math.min(asked, IPC_PROTOCOL_VERSION) : NaN;
    if (!(typeof min === "number" && version >= min && version >= IPC_MIN_PROTOCOL_VERSION)) {
      throw new NodeError(
        "invalid_argument",
        `IPC protocol ${String(asked)}${min !== asked ? ` (down to ${String(min)})` : ""} is not supported; this daemon speaks ${IPC_MIN_PROTOCOL_VERSION} to ${IPC_PROTOCOL_VERSION}`,
        "use a driver and daemon from the same Pilot release",
      );
    }
    this.protocol = version;
    return {
      protocol: version,
      address: formatAddress(this.node.address),
      hostname: this.node.hostname ?? null,
      window: STREAM_WINDOW,
      max_frame: MAX_FRAME_LENGTH,
    };
  }

  private feed(): EventFeed {
    const feed = this.node.events;
    if (!feed) throw new NodeError("invalid_argument", "this daemon has no local event feed");
    return feed;
  }

  private clientEvents(): ClientEvents {
    if (this.protocol < 2) {
      throw new NodeError("invalid_argument", `event subscriptions need IPC protocol 2; this connection speaks ${this.protocol}`, "say hello with {protocol: 2} (a driver from this release does)");
    }
    if (!this.events) {
      this.events = new ClientEvents(this.feed(), this.writer, this.eventLimits);
      this.events.onFirstDrop = () => this.logger?.warn("an ipc client does not read its events; dropping its oldest queued events", { client: this.id });
    }
    return this.events;
  }

  /** The feed and every client's subscriptions: what each holds queued and what it lost. */
  private eventsStatus(): unknown {
    const feed = this.feed();
    const kept = feed.recent();
    const clients = [];
    for (const session of this.allSessions()) {
      if (!session.events) continue;
      clients.push({ client: session.id, ...session.events.stats(), backlog: session.writer.backlog });
    }
    return { last_seq: feed.lastSeq, oldest_seq: kept.length > 0 ? kept[0]!.seq : null, kept: kept.length, boot: feed.boot, limits: { subscriptions: this.eventLimits.maxSubscriptions, queue_events: this.eventLimits.queueEvents, queue_bytes: this.eventLimits.queueBytes, client_high_water: this.writer.highWater }, clients, webhook: this.webhookStatus?.() ?? null };
  }

  private async dial(id: number, params: Record<string, unknown>): Promise<void> {
    const address = addressParam(params.address);
    const port = portParam(params.port, "port");
    const timeoutMs = params.timeout_ms === undefined ? undefined : positiveParam(params.timeout_ms, "timeout_ms");
    const handle = await this.node.dial(address, port, timeoutMs === undefined ? undefined : { timeoutMs });
    if (this.closed) {
      handle.close();
      return;
    }
    const stream = this.register(handle);
    this.respond(id, streamInfo(stream.id, handle));
    this.attach(stream);
  }

  private listen(params: Record<string, unknown>): unknown {
    const port = portParam(params.port, "port");
    const listenerId = this.nextListenerId++;
    const binding = this.node.listen(port, (handle) => this.accept(listenerId, handle));
    this.listeners.set(listenerId, binding);
    return { listener: listenerId, port: binding.port };
  }

  private accept(listenerId: number, handle: StreamHandle): void {
    if (this.closed || !this.listeners.has(listenerId)) {
      handle.close();
      return;
    }
    const stream = this.register(handle);
    const frame = encodeFrame({
      type: FrameType.Accept,
      listener: listenerId,
      stream: stream.id,
      remoteAddress: handle.remoteAddress,
      remotePort: handle.remotePort,
      localPort: handle.localPort,
    });
    if (!frame.ok) {
      this.forget(stream);
      handle.abort();
      return;
    }
    this.writer.append(frame.value);
    this.attach(stream);
  }

  private bindDatagrams(params: Record<string, unknown>): unknown {
    const port = portParam(params.port, "port");
    const bindingId = this.nextBindingId++;
    const binding = this.node.bindDatagrams(port, (message) => {
      if (this.closed || !this.datagramBindings.has(bindingId)) return;
      if (this.writer.backlog > this.writer.highWater) {
        // Datagrams are unreliable by contract: a client that does not keep up loses some, and memory stays bounded.
        this.droppedDatagrams++;
        return;
      }
      const frame = encodeFrame({
        type: FrameType.Datagram,
        binding: bindingId,
        srcAddress: message.srcAddress,
        srcPort: message.srcPort,
        dstPort: message.dstPort,
        data: message.data,
      });
      if (frame.ok) this.writer.append(frame.value);
    });
    this.datagramBindings.set(bindingId, binding);
    return { binding: bindingId, port: binding.port };
  }

  private unbind(bindings: Map<number, PortBinding>, idParam: unknown, what: string): unknown {
    const bindingId = idParam;
    if (typeof bindingId !== "number" || !bindings.has(bindingId)) {
      throw new NodeError("not_found", `no ${what} ${String(bindingId)} on this connection`);
    }
    bindings.get(bindingId)!.close();
    bindings.delete(bindingId);
    return {};
  }

  private async sendDatagram(id: number, srcPort: number, dst: Address, dstPort: number, data: Uint8Array): Promise<void> {
    if (srcPort !== 0 && ![...this.datagramBindings.values()].some((b) => b.port === srcPort)) {
      return this.respondError(id, new NodeError("invalid_argument", `source port ${srcPort} is not bound by this client`, "bind it with bindDatagrams first, or send from port 0"));
    }
    if (this.inflight >= this.maxInflight) {
      return this.respondError(id, new NodeError("limit_exceeded", `more than ${this.maxInflight} requests in flight`));
    }
    this.inflight++;
    try {
      // The frame's buffer is only ours until we return to the reader; hand the node its own copy.
      await this.node.sendDatagram(srcPort, dst, dstPort, data.slice());
      this.respond(id, null);
    } catch (error) {
      this.respondError(id, error);
    } finally {
      this.inflight--;
    }
  }
}

function streamInfo(id: number, handle: StreamHandle): unknown {
  return {
    stream: id,
    local_port: handle.localPort,
    remote_address: formatAddress(handle.remoteAddress),
    remote_port: handle.remotePort,
  };
}

function portParam(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new NodeError("invalid_argument", `${name} must be an integer 0-65535`);
  }
  return value;
}

function positiveParam(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new NodeError("invalid_argument", `${name} must be a positive number`);
  }
  return value;
}

function addressParam(value: unknown): Address {
  if (typeof value !== "string") throw new NodeError("invalid_argument", "address must be a Pilot address string");
  const parsed = parseAddress(value);
  if (!parsed.ok) throw new NodeError("invalid_argument", parsed.error.message);
  return parsed.value;
}
