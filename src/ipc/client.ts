/**
 * The app's end of the IPC socket: requests matched by id, and any number of
 * streams, each with its own credit in each direction. The driver builds its
 * sockets and servers on this; it has no Node-stream semantics of its own.
 *
 * Flow control mirrors the daemon's: `IpcStream.write` takes only what the
 * daemon has credited (the caller waits for `onWritable` for the rest), and
 * the daemon sends only what this side has granted with `consumed()`. So a
 * stream nobody reads holds at most one window here, and never slows another.
 */
import { NodeError } from "../shared/errors.ts";
import { formatAddress, parseAddress, type Address } from "../protocol/address.ts";
import type { LocalEvent } from "../shared/events.ts";
import { daemonGoneError, driverClosedError, fromWireError, notRunningError } from "./errors.ts";
import {
  decodeFrame,
  encodeFrame,
  FrameReader,
  FrameType,
  IPC_MIN_PROTOCOL_VERSION,
  IPC_PROTOCOL_VERSION,
  MAX_FRAME_LENGTH,
  STREAM_WINDOW,
  StreamOptionCode,
  type Frame,
} from "./frames.ts";
import { FrameWriter } from "./writer.ts";
import { openIpcConnection, type IpcConnection, type IpcTransport } from "./connection.ts";

export interface IpcStreamHandler {
  /** Bytes from the peer. Call `consumed(n)` when the app has taken them, to let more come. */
  onData(data: Uint8Array): void;
  /** Credit arrived after `write` took less than offered. */
  onWritable(): void;
  /** The peer half-closed; every byte before it was delivered. */
  onEnd(): void;
  /** The stream is finished; `error` if it was reset or the daemon went away. */
  onClosed(error?: NodeError): void;
}

type HeldEvent =
  | { kind: "data"; data: Uint8Array }
  | { kind: "end" }
  | { kind: "closed"; error?: NodeError };

/** One stream over the IPC connection. */
export class IpcStream {
  /** Bytes the daemon will still take (app→daemon credit). */
  private sendCredit = STREAM_WINDOW;
  /** Bytes delivered to the handler that have not been granted back. */
  private outstanding = 0;
  private grantable = 0;
  private handlerRef: IpcStreamHandler | null = null;
  private held: HeldEvent[] | null = [];
  private finSent = false;
  private wantWritable = false;
  private noDelay: boolean | undefined;
  /** Finished on this side: no frames go out, none are expected. */
  done = false;

  constructor(
    private readonly client: IpcClient,
    readonly id: number,
    readonly localPort: number,
    readonly remoteAddress: Address,
    readonly remotePort: number,
  ) {}

  /**
   * Attaches the handler. Events that arrived before (the daemon may send
   * data right after the dial answer or ACCEPT) are replayed now; they are
   * bounded by the window.
   */
  set handler(handler: IpcStreamHandler) {
    this.handlerRef = handler;
    const held = this.held;
    this.held = null;
    if (!held) return;
    for (const event of held) {
      if (event.kind === "data") handler.onData(event.data);
      else if (event.kind === "end") handler.onEnd();
      else handler.onClosed(event.error);
    }
  }

  /** Bytes `write` would take right now. */
  get writableBytes(): number {
    return this.done || this.finSent ? 0 : this.sendCredit;
  }

  /** Queues up to the available credit of `data[start, end)`; returns how many bytes it took. */
  write(data: Uint8Array, start = 0, end = data.length): number {
    if (this.done || this.finSent) return 0;
    const n = Math.min(end - start, this.sendCredit);
    if (n > 0) {
      this.sendCredit -= n;
      this.client.writer.appendData(this.id, data, start, start + n);
    }
    if (n < end - start) this.wantWritable = true;
    return n;
  }

  /** The app took `bytes` of what `onData` delivered: the daemon may send that much more. */
  consumed(bytes: number): void {
    if (this.done || bytes <= 0) return;
    const n = Math.min(bytes, this.outstanding);
    this.outstanding -= n;
    this.grantable += n;
    this.client.creditDirty(this);
  }

  /** Half-close: FIN after everything written so far. */
  shutdown(): void {
    if (this.done || this.finSent) return;
    this.finSent = true;
    this.client.writer.appendStreamFrame(FrameType.Fin, this.id);
  }

  /** Calls `done` once everything written on this connection so far (this stream's FIN included) is in the socket. */
  whenFlushed(done: () => void): void {
    this.client.writer.whenFlushed(done);
  }

  /** Graceful close of both directions; bytes already written still go out. */
  close(): void {
    if (this.done) return;
    this.finish();
    this.client.writer.appendStreamFrame(FrameType.Close, this.id);
  }

  /** Abortive close: the peer sees a reset. */
  abort(): void {
    if (this.done) return;
    this.finish();
    const frame = encodeFrame({ type: FrameType.Reset, stream: this.id, code: "connection_reset", message: "reset by the application" });
    if (frame.ok) this.client.writer.append(frame.value);
  }

  setNoDelay(noDelay: boolean): void {
    if (this.done || this.noDelay === noDelay) return;
    this.noDelay = noDelay;
    const frame = encodeFrame({ type: FrameType.StreamOption, stream: this.id, option: StreamOptionCode.NoDelay, value: noDelay ? 1 : 0 });
    if (frame.ok) this.client.writer.append(frame.value);
  }

  /** @internal Credit to send with the next flush. */
  takeGrant(): number {
    const n = this.grantable;
    this.grantable = 0;
    return this.done ? 0 : n;
  }

  /** @internal */
  receiveData(data: Uint8Array): boolean {
    if (this.outstanding + this.grantable + data.length > STREAM_WINDOW) return false;
    this.outstanding += data.length;
    this.dispatch({ kind: "data", data });
    return true;
  }

  /** @internal */
  receiveCredit(bytes: number): boolean {
    this.sendCredit += bytes;
    if (this.sendCredit > STREAM_WINDOW) return false;
    if (this.wantWritable && !this.done) {
      this.wantWritable = false;
      this.handlerRef?.onWritable();
    }
    return true;
  }

  /** @internal */
  receiveEnd(): void {
    this.dispatch({ kind: "end" });
  }

  /** @internal The daemon closed or reset the stream, or the connection died. */
  receiveClosed(error?: NodeError): void {
    if (this.done) return;
    this.finish();
    this.dispatch({ kind: "closed", error });
  }

  private dispatch(event: HeldEvent): void {
    if (this.held) {
      this.held.push(event);
      return;
    }
    const handler = this.handlerRef!;
    if (event.kind === "data") handler.onData(event.data);
    else if (event.kind === "end") handler.onEnd();
    else handler.onClosed(event.error);
  }

  private finish(): void {
    this.done = true;
    this.client.forgetStream(this.id);
  }
}

export interface DatagramEvent {
  readonly srcAddress: Address;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly data: Uint8Array;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: NodeError): void;
  /** Runs synchronously when the answer arrives, before any later frame is handled. */
  transform?: (result: unknown) => unknown;
}

export interface IpcClientOptions {
  /** Milliseconds to wait for the socket connect and the hello exchange; default 5000. */
  connectTimeoutMs?: number;
  /** @internal The socket implementation (default: the runtime's own, see connection.ts); for benchmarks and tests. */
  transport?: IpcTransport;
}

export interface HelloResult {
  /** The protocol agreed with the daemon: 2 with event subscriptions, 1 with a daemon from before them. */
  readonly protocol: number;
  readonly address: string;
  readonly hostname: string | null;
}

/** A connection to the daemon's IPC socket. */
export class IpcClient {
  readonly writer: FrameWriter;
  private readonly reader = new FrameReader(MAX_FRAME_LENGTH);
  private readonly pending = new Map<number, Pending>();
  private readonly streams = new Map<number, IpcStream>();
  private readonly listeners = new Map<number, (stream: IpcStream) => void>();
  private readonly bindings = new Map<number, (datagram: DatagramEvent) => void>();
  private readonly subscriptions = new Map<number, (event: LocalEvent) => void>();
  /** The protocol agreed in `hello`. */
  protocol = 1;
  private readonly dirty = new Set<IpcStream>();
  private nextRequestId = 1;
  private refs = 0;
  private closedError: NodeError | null = null;
  /** Called once when the connection ends; `error` unless `close()` ended it. */
  onClose: ((error: NodeError | undefined) => void) | null = null;

  private constructor(
    private readonly socket: IpcConnection,
    readonly socketPath: string,
  ) {
    this.writer = new FrameWriter(socket);
    this.writer.beforeFlush = () => this.flushGrants();
    this.writer.onDead = () => this.fail(daemonGoneError(this.socketPath));
    socket.unref();
  }

  /** Connects and checks the protocol version. Fails with `not_running` if nobody listens on `socketPath`. */
  static async connect(socketPath: string, options: IpcClientOptions = {}): Promise<{ client: IpcClient; hello: HelloResult }> {
    const timeoutMs = options.connectTimeoutMs ?? 5000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NodeError("timeout", `the daemon on ${socketPath} did not answer within ${timeoutMs} ms`, "check `pilot daemon status`")), timeoutMs);
    });
    let client: IpcClient | undefined;
    try {
      const opening = openIpcConnection(socketPath, options.transport).catch((error: NodeJS.ErrnoException) => {
        throw connectError(socketPath, error);
      });
      // A connection that opens after the timeout won is closed, not left holding the process.
      timeout.catch(() => opening.then((late) => late.end(), () => {}));
      const socket = await Promise.race([opening, timeout]);
      client = new IpcClient(socket, socketPath);
      const c = client;
      socket.handler = {
        data: (chunk) => c.receive(chunk),
        drain: () => c.writer.drain(),
        closed: () => c.fail(daemonGoneError(socketPath)),
      };
      const hello = (await Promise.race([
        c.request("hello", { protocol: IPC_PROTOCOL_VERSION, min_protocol: IPC_MIN_PROTOCOL_VERSION }).catch((error: unknown) => {
          // A daemon from before protocol 2 refuses anything but 1 (and knows no min_protocol): speak 1 with it.
          if (error instanceof NodeError && error.code === "invalid_argument" && IPC_MIN_PROTOCOL_VERSION === 1) return c.request("hello", { protocol: 1 });
          throw error;
        }),
        timeout,
      ])) as Record<string, unknown>;
      if (typeof hello !== "object" || hello === null || typeof hello.address !== "string" || !parseAddress(hello.address).ok) {
        throw new NodeError("internal", "the daemon's hello answer is malformed");
      }
      const protocol = hello.protocol === undefined ? 1 : hello.protocol;
      if (typeof protocol !== "number" || protocol < IPC_MIN_PROTOCOL_VERSION || protocol > IPC_PROTOCOL_VERSION) {
        throw new NodeError("internal", `the daemon answered hello with protocol ${String(hello.protocol)}, which this driver does not speak`, "use a driver and daemon from the same Pilot release");
      }
      client.protocol = protocol;
      return {
        client,
        hello: {
          protocol,
          address: hello.address,
          hostname: typeof hello.hostname === "string" ? hello.hostname : null,
        },
      };
    } catch (error) {
      client?.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  /** Sends a control request; the answer is matched by id. */
  request(method: string, params: Record<string, unknown> = {}, transform?: (result: unknown) => unknown): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextRequestId;
    this.nextRequestId = id === 0xffff_ffff ? 1 : id + 1;
    const frame = encodeFrame({ type: FrameType.Request, id, method, params });
    if (!frame.ok) {
      return Promise.reject(new NodeError("invalid_argument", `cannot send "${method}": ${frame.error.message}`));
    }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, transform });
      this.retain();
      this.writer.append(frame.value);
    });
  }

  /** Opens a stream to `address:port`. */
  dial(address: Address, port: number, timeoutMs?: number): Promise<IpcStream> {
    const params: Record<string, unknown> = { address: formatAddress(address), port };
    if (timeoutMs !== undefined) params.timeout_ms = timeoutMs;
    return this.request("dial", params, (result) => this.openStream(result)) as Promise<IpcStream>;
  }

  /** Binds a port; `onAccept` runs synchronously for each new stream (attach a handler right there). */
  async listen(port: number, onAccept: (stream: IpcStream) => void): Promise<{ listener: number; port: number }> {
    return (await this.request("listen", { port }, (result) => {
      const r = idAndPort(result, "listener");
      this.listeners.set(r.id, onAccept);
      return { listener: r.id, port: r.port };
    })) as { listener: number; port: number };
  }

  /** Unbinds a port; streams already accepted live on. */
  async unlisten(listener: number): Promise<void> {
    this.listeners.delete(listener);
    await this.request("unlisten", { listener });
  }

  async bindDatagrams(port: number, onDatagram: (datagram: DatagramEvent) => void): Promise<{ binding: number; port: number }> {
    return (await this.request("bind_datagrams", { port }, (result) => {
      const r = idAndPort(result, "binding");
      this.bindings.set(r.id, onDatagram);
      return { binding: r.id, port: r.port };
    })) as { binding: number; port: number };
  }

  async unbindDatagrams(binding: number): Promise<void> {
    this.bindings.delete(binding);
    await this.request("unbind_datagrams", { binding });
  }

  /** Sends one datagram; resolves when the daemon has taken it (errors are this call's, never another's). */
  async sendDatagram(srcPort: number, address: Address, dstPort: number, data: Uint8Array): Promise<void> {
    if (this.closedError) throw this.closedError;
    const id = this.nextRequestId;
    this.nextRequestId = id === 0xffff_ffff ? 1 : id + 1;
    const frame = encodeFrame({ type: FrameType.SendDatagram, id, srcPort, dstAddress: address, dstPort, data });
    if (!frame.ok) throw new NodeError("invalid_argument", `cannot send datagram: ${frame.error.message}`);
    await new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.retain();
      this.writer.append(frame.value);
    });
  }

  /**
   * Subscribes to the daemon's local events (protocol 2): `onEvent` runs
   * synchronously for every EVENT frame of this subscription, from the first
   * one on (it is attached before any can arrive).
   */
  async subscribeEvents(params: { types?: readonly string[]; since?: number }, onEvent: (event: LocalEvent) => void): Promise<{ subscription: number; lastSeq: number; boot: string }> {
    if (this.protocol < 2) {
      throw new NodeError("invalid_argument", "the daemon is too old for event subscriptions (it speaks IPC protocol 1)", "restart it from this Pilot release: pilot daemon stop && pilot daemon start");
    }
    const body: Record<string, unknown> = {};
    if (params.types !== undefined) body.types = [...params.types];
    if (params.since !== undefined) body.since = params.since;
    return (await this.request("events_subscribe", body, (result) => {
      const r = result as Record<string, unknown>;
      if (!isU32(r?.subscription) || typeof r?.last_seq !== "number" || typeof r?.boot !== "string") throw new NodeError("internal", "the daemon's events_subscribe answer is malformed");
      this.subscriptions.set(r.subscription as number, onEvent);
      return { subscription: r.subscription as number, lastSeq: r.last_seq, boot: r.boot };
    })) as { subscription: number; lastSeq: number; boot: string };
  }

  /** Ends a subscription: no EVENT frame of it is delivered after this call. */
  async unsubscribeEvents(subscription: number): Promise<void> {
    if (!this.subscriptions.delete(subscription) || this.closedError) return;
    await this.request("events_unsubscribe", { subscription });
  }

  /** Keeps the process alive while held (pending requests hold it automatically). */
  retain(): void {
    if (this.refs++ === 0 && !this.closedError) this.socket.ref();
  }

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs === 0 && !this.closedError) this.socket.unref();
  }

  /** Closes the connection; the daemon closes this client's streams and unbinds its ports. */
  close(): void {
    if (this.closedError) return;
    this.shutdownWith(driverClosedError(), undefined);
    this.socket.end();
  }

  /** @internal */
  forgetStream(id: number): void {
    this.streams.delete(id);
  }

  /** @internal */
  creditDirty(stream: IpcStream): void {
    this.dirty.add(stream);
    this.writer.scheduleFlush();
  }

  private flushGrants(): void {
    for (const stream of this.dirty) {
      const n = stream.takeGrant();
      if (n > 0) this.writer.appendStreamFrame(FrameType.Credit, stream.id, n);
    }
    this.dirty.clear();
  }

  private openStream(result: unknown): IpcStream {
    const r = result as Record<string, unknown>;
    const remote = typeof r?.remote_address === "string" ? parseAddress(r.remote_address) : null;
    if (!isU32(r?.stream) || !isU16(r?.local_port) || !isU16(r?.remote_port) || !remote?.ok) {
      throw new NodeError("internal", "the daemon's dial answer is malformed");
    }
    const stream = new IpcStream(this, r.stream as number, r.local_port as number, remote.value, r.remote_port as number);
    this.streams.set(stream.id, stream);
    return stream;
  }

  private receive(chunk: Uint8Array): void {
    if (this.closedError) return;
    this.reader.push(chunk);
    while (!this.closedError) {
      const raw = this.reader.next();
      if (raw === null) return;
      if (!raw.ok) return this.protocolError(raw.error.message);
      const frame = decodeFrame(raw.value.type, raw.value.payload, "daemon");
      if (!frame.ok) return this.protocolError(frame.error.message);
      this.handle(frame.value);
    }
  }

  private handle(frame: Frame): void {
    switch (frame.type) {
      case FrameType.Response: {
        const pending = this.pending.get(frame.id);
        if (!pending) return;
        this.pending.delete(frame.id);
        this.release();
        if (!frame.ok) return pending.reject(fromWireError(frame.error));
        try {
          pending.resolve(pending.transform ? pending.transform(frame.result) : frame.result);
        } catch (error) {
          pending.reject(error instanceof NodeError ? error : new NodeError("internal", String(error)));
        }
        return;
      }
      case FrameType.Accept: {
        const onAccept = this.listeners.get(frame.listener);
        const stream = new IpcStream(this, frame.stream, frame.localPort, frame.remoteAddress, frame.remotePort);
        this.streams.set(stream.id, stream);
        // Raced with an unlisten: nobody wants it.
        if (!onAccept) return stream.close();
        return onAccept(stream);
      }
      case FrameType.Data: {
        const stream = this.streams.get(frame.stream);
        if (!stream) return;
        if (!stream.receiveData(frame.data)) return this.protocolError(`stream ${frame.stream} got more than its window`);
        return;
      }
      case FrameType.Credit: {
        const stream = this.streams.get(frame.stream);
        if (!stream) return;
        if (!stream.receiveCredit(frame.bytes)) return this.protocolError(`stream ${frame.stream} credited beyond its window`);
        return;
      }
      case FrameType.Fin:
        return this.streams.get(frame.stream)?.receiveEnd();
      case FrameType.Close:
        return this.streams.get(frame.stream)?.receiveClosed();
      case FrameType.Reset: {
        const stream = this.streams.get(frame.stream);
        if (!stream) return;
        return stream.receiveClosed(fromWireError({ code: frame.code, message: frame.message }));
      }
      case FrameType.Event:
        // A subscription this side has already ended: the frame raced the unsubscribe.
        return this.subscriptions.get(frame.subscription)?.(frame.event);
      case FrameType.Datagram:
        return this.bindings.get(frame.binding)?.({
          srcAddress: frame.srcAddress,
          srcPort: frame.srcPort,
          dstPort: frame.dstPort,
          data: frame.data,
        });
      default:
        return this.protocolError(`unexpected frame type ${frame.type}`);
    }
  }

  private protocolError(message: string): void {
    this.fail(new NodeError("internal", `the daemon sent a malformed IPC frame (${message})`, "check that the driver and the daemon come from the same Pilot release"));
    this.socket.end();
  }

  private fail(error: NodeError): void {
    if (this.closedError) return;
    this.shutdownWith(error, error);
  }

  private shutdownWith(error: NodeError, reported: NodeError | undefined): void {
    this.closedError = error;
    this.writer.flush();
    this.writer.discard();
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const stream of streams) stream.receiveClosed(error);
    this.listeners.clear();
    this.bindings.clear();
    this.subscriptions.clear();
    this.socket.unref();
    this.onClose?.(reported);
  }
}

function connectError(socketPath: string, error: NodeJS.ErrnoException): NodeError {
  switch (error.code) {
    case "ENOENT":
    case "ECONNREFUSED":
    case "ENOTDIR":
      return notRunningError(socketPath);
    case "EACCES":
    case "EPERM":
      return new NodeError("unauthorized", `permission denied on ${socketPath}`, "the daemon belongs to another user: run as that user, or start your own daemon with another PILOT_HOME");
    default:
      // An errno from the socket means nobody usable listens there; anything else is a bug
      // (e.g. a runtime without what the connection needs), which must not read as "start the daemon".
      if (typeof error.code === "string") return notRunningError(socketPath, error.message);
      return new NodeError("internal", `cannot open the IPC socket ${socketPath}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function isU32(v: unknown): boolean {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}

function isU16(v: unknown): boolean {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

function idAndPort(result: unknown, key: string): { id: number; port: number } {
  const r = result as Record<string, unknown>;
  if (!isU32(r?.[key]) || !isU16(r?.port)) throw new NodeError("internal", `the daemon's ${key} answer is malformed`);
  return { id: r[key] as number, port: r.port as number };
}
