/**
 * PilotSocket: one Pilot stream as a Node `Duplex` with the `net.Socket`
 * surface HTTP stacks use. Backpressure is end to end: `_write` completes
 * only as the daemon grants credit, and bytes the app has not read are not
 * credited back, so the daemon (and, beyond it, the peer) stops sending.
 */
import { Duplex } from "node:stream";
import type { IpcClient, IpcStream, IpcStreamHandler } from "../ipc/client.ts";
import { formatAddress } from "../protocol/address.ts";
import { brokenPipeError, toSocketError, type NodeError } from "./errors.ts";

export interface PilotSocketOptions {
  /**
   * Keep the writable side open after the peer half-closes (like `net`'s
   * option). Default false: the socket ends its side when the peer does.
   */
  allowHalfOpen?: boolean;
  /** Readable and writable high-water marks in bytes; default 64 KiB. */
  highWaterMark?: number;
}

/** `address()` of a PilotSocket or PilotServer. */
export interface PilotAddressInfo {
  /** A Pilot address, `N:NNNN.HHHH.LLLL`. */
  address: string;
  family: "pilot";
  port: number;
}

type WriteCallback = (error?: Error | null) => void;

const DEFAULT_HIGH_WATER = 64 * 1024;

export class PilotSocket extends Duplex implements IpcStreamHandler {
  /** The peer's Pilot address (`N:NNNN.HHHH.LLLL`); undefined until connected. */
  remoteAddress: string | undefined;
  /** The peer's virtual port. */
  remotePort: number | undefined;
  readonly remoteFamily = "pilot";
  /** This node's Pilot address. */
  readonly localAddress: string;
  /** This side's virtual port (an ephemeral port for dialled sockets). */
  localPort: number | undefined;
  /** True until the stream is established (sockets from `Driver.connect` start connecting). */
  connecting: boolean;
  /** Bytes received from the peer. */
  bytesRead = 0;
  /** Idle timeout set by `setTimeout`, in ms (0 = none). */
  timeout = 0;

  private stream: IpcStream | null = null;
  private bytesSent = 0;
  /** Chunks `_write`/`_writev` handed over that the daemon has not taken yet. */
  private outbox: Uint8Array[] = [];
  private outboxOffset = 0;
  private outboxCallback: WriteCallback | null = null;
  /** `_final` waiting for the connection. */
  private finalCallback: WriteCallback | null = null;
  /** Bytes pushed while the readable buffer was full: credited on the next `_read`. */
  private ungranted = 0;
  private refd = true;
  private released = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastActivity = 0;
  private noDelay: boolean | undefined;

  /** @internal Sockets are made by the driver (`dial`, `connect`, a server's 'connection'). */
  constructor(
    private readonly client: IpcClient,
    localAddress: string,
    options: PilotSocketOptions = {},
  ) {
    const hwm = options.highWaterMark ?? DEFAULT_HIGH_WATER;
    super({ allowHalfOpen: options.allowHalfOpen ?? false, readableHighWaterMark: hwm, writableHighWaterMark: hwm });
    this.localAddress = localAddress;
    this.connecting = true;
    client.retain();
  }

  /** @internal Binds the socket to its established stream. */
  attach(stream: IpcStream): void {
    if (this.destroyed) {
      stream.close();
      return;
    }
    this.stream = stream;
    this.remoteAddress = formatAddress(stream.remoteAddress);
    this.remotePort = stream.remotePort;
    this.localPort = stream.localPort;
    this.connecting = false;
    if (this.noDelay !== undefined) stream.setNoDelay(this.noDelay);
    stream.handler = this;
    this.touch();
    this.emit("connect");
    this.emit("ready");
    this.pumpOutbox();
    if (this.finalCallback && this.outbox.length === 0) this.finishWrites();
  }

  /** @internal The connection could not be made. */
  failConnect(error: NodeError | Error): void {
    this.connecting = false;
    this.destroy(toSocketError(error));
  }

  /** Bytes written by the app and handed to the daemon (like `net.Socket.bytesWritten`). */
  get bytesWritten(): number {
    return this.bytesSent;
  }

  /** True while the connection is not established yet. */
  get pending(): boolean {
    return this.connecting;
  }

  /** "opening" | "open" | "readOnly" | "writeOnly" | "closed", as in `net`. */
  get readyState(): ReadyState {
    return readyStateOf(this);
  }

  address(): PilotAddressInfo | Record<string, never> {
    if (this.localPort === undefined) return {};
    return { address: this.localAddress, family: "pilot", port: this.localPort };
  }

  /** Asks the daemon to send small writes at once instead of coalescing them. */
  setNoDelay(noDelay = true): this {
    this.noDelay = noDelay;
    this.stream?.setNoDelay(noDelay);
    return this;
  }

  /** Accepted for compatibility; the daemon keeps its tunnels alive on its own. */
  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this;
  }

  /** Emits 'timeout' after `ms` without activity (0 disables), like `net.Socket.setTimeout`. The socket stays open. */
  setTimeout(ms: number, callback?: () => void): this {
    this.timeout = ms;
    if (callback) {
      if (ms === 0) this.removeListener("timeout", callback);
      else this.once("timeout", callback);
    }
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (ms > 0) {
      this.lastActivity = performance.now();
      this.arm(ms);
    }
    return this;
  }

  /** Keeps the process alive while this socket is open (the default). */
  ref(): this {
    if (!this.refd && !this.released) this.client.retain();
    this.refd = true;
    return this;
  }

  /** Lets the process exit even though this socket is open. */
  unref(): this {
    if (this.refd && !this.released) this.client.release();
    this.refd = false;
    return this;
  }

  /** Ends the writable side, then destroys the socket once everything is written. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once("finish", () => this.destroy());
  }

  /** Closes with a reset, like `net.Socket.resetAndDestroy`. */
  resetAndDestroy(): this {
    this.stream?.abort();
    return this.destroy();
  }

  // -- IpcStreamHandler -----------------------------------------------------

  /** @internal */
  onData(data: Uint8Array): void {
    this.bytesRead += data.length;
    this.touch();
    if (this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength))) this.stream?.consumed(data.length);
    else this.ungranted += data.length;
  }

  /** @internal */
  onWritable(): void {
    this.pumpOutbox();
  }

  /** @internal */
  onEnd(): void {
    this.touch();
    this.push(null);
  }

  /** @internal */
  onClosed(error?: NodeError): void {
    if (error?.code === "closed") {
      // The app closed the driver: like destroy(), not a failure.
      this.destroy();
      return;
    }
    if (error) {
      this.destroy(toSocketError(error));
      return;
    }
    // Closed gracefully by the daemon: what was received stays readable; writes from now on fail.
    this.push(null);
    if (this.outboxCallback) this.failWrites(brokenPipeError());
    if (this.finalCallback) this.finishWrites();
  }

  // -- Duplex ---------------------------------------------------------------

  override _read(): void {
    if (this.ungranted > 0 && this.stream) {
      const n = this.ungranted;
      this.ungranted = 0;
      this.stream.consumed(n);
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.outbox.push(chunk);
    this.outboxCallback = callback;
    this.pumpOutbox();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: WriteCallback): void {
    for (const { chunk } of chunks) this.outbox.push(chunk);
    this.outboxCallback = callback;
    this.pumpOutbox();
  }

  override _final(callback: WriteCallback): void {
    this.finalCallback = callback;
    if (this.stream || this.destroyed) this.finishWrites();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const stream = this.stream;
    if (stream && !stream.done) {
      if (error) stream.abort();
      else stream.close();
    }
    this.connecting = false;
    if (!this.released) {
      this.released = true;
      if (this.refd) this.client.release();
    }
    if (this.outboxCallback) {
      const cb = this.outboxCallback;
      this.outboxCallback = null;
      this.outbox = [];
      cb(error ?? brokenPipeError());
    }
    callback(error);
  }

  // -- internals --------------------------------------------------------------

  private pumpOutbox(): void {
    const stream = this.stream;
    if (!stream || this.outboxCallback === null) return;
    if (stream.done) return this.failWrites(brokenPipeError());
    while (this.outbox.length > 0) {
      const head = this.outbox[0]!;
      const taken = stream.write(head, this.outboxOffset, head.length);
      this.outboxOffset += taken;
      this.bytesSent += taken;
      if (this.outboxOffset < head.length) return; // Out of credit: onWritable resumes.
      this.outbox.shift();
      this.outboxOffset = 0;
    }
    this.touch();
    const cb = this.outboxCallback;
    this.outboxCallback = null;
    cb();
  }

  private failWrites(error: Error): void {
    const cb = this.outboxCallback;
    this.outboxCallback = null;
    this.outbox = [];
    this.outboxOffset = 0;
    cb?.(error);
  }

  private finishWrites(): void {
    const cb = this.finalCallback;
    if (!cb) return;
    this.finalCallback = null;
    const stream = this.stream;
    if (!stream) return cb();
    stream.shutdown();
    // 'finish' (end's callback) only once the FIN is in the kernel, as with a TCP socket: an app may
    // exit right after it without losing its last bytes (they would wait in the IPC writer otherwise).
    stream.whenFlushed(() => cb());
  }

  private touch(): void {
    if (this.timeout === 0) return;
    this.lastActivity = performance.now();
    if (!this.timer && !this.destroyed) this.arm(this.timeout);
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.destroyed || this.timeout === 0) return;
      const idle = performance.now() - this.lastActivity;
      if (idle + 1 >= this.timeout) this.emit("timeout");
      else this.arm(this.timeout - idle);
    }, ms);
    this.timer.unref?.();
  }
}

export type ReadyState = "opening" | "open" | "readOnly" | "writeOnly" | "closed";

/** `net.Socket.readyState` for any Duplex-like socket. */
export function readyStateOf(s: { connecting: boolean; destroyed: boolean; readable: boolean; writable: boolean }): ReadyState {
  if (s.connecting) return "opening";
  if (s.destroyed) return "closed";
  if (s.readable && s.writable) return "open";
  if (s.readable) return "readOnly";
  if (s.writable) return "writeOnly";
  return "closed";
}
