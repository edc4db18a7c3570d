/**
 * The secure channel ("port 443") as sockets: `SecureSocket` is a Duplex
 * carried inside one Pilot stream (a PilotSocket), encrypted a second time
 * with keys of its own (src/crypto/secure-channel.ts holds the protocol; this
 * file is only the glue). `SecureServer` accepts them.
 *
 * The app holds no private key: the handshake's signature comes from the
 * daemon (`secure_sign`, which signs only the channel's context string and a
 * 32-byte transcript hash), and the peer's identity key is the one the daemon
 * pins for the address the stream comes from (`peer_key`).
 *
 * A SecureSocket is "connecting" until the handshake is done: writes made
 * before then are sealed and sent afterwards. Errors are PilotSocketErrors
 * (SecureSocketError when the secure layer itself refused something: its
 * `secureCode` says what, e.g. `auth_failed`, `bad_record_mac`, `truncated`).
 */
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import { parseAddress, type Address } from "../protocol/address.ts";
import { SecureChannel, SecureChannelError, type SecureChannelErrorCode } from "../crypto/secure-channel.ts";
import { NodeError, PilotSocketError, toSocketError, type NodeErrorCode } from "./errors.ts";
import type { PilotServer } from "./server.ts";
import { readyStateOf, type PilotAddressInfo, type PilotSocket, type PilotSocketOptions, type ReadyState } from "./socket.ts";

/** The well-known port of the secure channel. */
export const SECURE_PORT = 443;
const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

export interface SecureSocketOptions extends PilotSocketOptions {
  /** Fail a handshake that has not finished after this many ms. Default 10000. */
  handshakeTimeoutMs?: number;
  /** @internal Who signs for this node and which key is pinned for a peer (default: the daemon). Tests only. */
  identity?: SecureIdentity;
}

/** What the secure layer needs from the daemon. */
export interface SecureIdentity {
  /** This node's Ed25519 signature over the channel's context ‖ `hash` (daemon call `secure_sign`). */
  sign(hash: Uint8Array): Promise<Uint8Array>;
  /** The identity key the daemon pins for `address` (daemon call `peer_key`). */
  peerKey(address: string): Promise<Uint8Array>;
}

/** The daemon as SecureIdentity, through a driver's `call`. */
export function daemonIdentity(driver: { call(method: string, params?: Record<string, unknown>): Promise<unknown> }): SecureIdentity {
  return {
    async sign(hash) {
      const r = (await driver.call("secure_sign", { hash: Buffer.from(hash).toString("base64") })) as { signature?: unknown };
      return decodeKey(r?.signature, 64, "secure_sign");
    },
    async peerKey(address) {
      const r = (await driver.call("peer_key", { target: address })) as { public_key?: unknown };
      return decodeKey(r?.public_key, 32, "peer_key");
    },
  };
}

function decodeKey(value: unknown, size: number, what: string): Uint8Array {
  const bytes = typeof value === "string" ? new Uint8Array(Buffer.from(value, "base64")) : new Uint8Array(0);
  if (bytes.length !== size) throw new NodeError("internal", `the daemon's answer to ${what} is malformed`);
  return bytes;
}

/** An error of the secure layer: `secureCode` is the secure channel's reason. */
export class SecureSocketError extends PilotSocketError {
  constructor(
    readonly secureCode: SecureChannelErrorCode,
    pilotCode: NodeErrorCode,
    message: string,
    options: { hint?: string; code?: string; cause?: unknown } = {},
  ) {
    super(pilotCode, message, options);
    this.name = "SecureSocketError";
  }
}

function toSecureSocketError(e: SecureChannelError, port: number | undefined, timedOut = false): SecureSocketError {
  const cause = { cause: e };
  switch (e.code) {
    case "auth_failed":
      return new SecureSocketError(e.code, "unauthorized", `secure channel refused: ${e.message}`, { code: "EPROTO", hint: "the peer is not the node its address belongs to, or its key changed: check it with pilot find", ...cause });
    case "peer_alert":
      if (e.alert === "auth_failed") {
        return new SecureSocketError(e.code, "unauthorized", "the peer refused this node's identity in the secure handshake", { code: "EPROTO", hint: "its daemon pins a different key for this node's address", ...cause });
      }
      return new SecureSocketError(e.code, "connection_reset", e.message, { code: "EPROTO", ...cause });
    case "unexpected_message":
    case "bad_frame":
    case "unsupported_version":
      return new SecureChannelSocketErrorWithHint(e, `is the service on port ${port ?? "?"} a secure listener (listenSecure)? Plain ports speak no secure channel`);
    case "truncated":
      return new SecureSocketError(e.code, "connection_reset", `secure channel cut: ${e.message}`, { code: "ECONNRESET", ...cause });
    case "aborted":
      return timedOut
        ? new SecureSocketError(e.code, "timeout", e.message, { code: "ETIMEDOUT", hint: "the peer's daemon or app did not answer the secure handshake in time", ...cause })
        : new SecureSocketError(e.code, "connection_reset", e.message, { code: "ECONNRESET", ...cause });
    default:
      return new SecureSocketError(e.code, "connection_reset", `secure channel failed: ${e.message}`, { code: "EPROTO", ...cause });
  }
}

class SecureChannelSocketErrorWithHint extends SecureSocketError {
  constructor(e: SecureChannelError, hint: string) {
    super(e.code, "connection_reset", `secure channel failed: ${e.message}`, { code: "EPROTO", hint, cause: e });
  }
}

/** The NodeError a promise-returning call rejects with for a socket error. */
export function toNodeError(error: unknown): NodeError {
  if (error instanceof NodeError) return error;
  if (error instanceof PilotSocketError) {
    const n = new NodeError(error.pilotCode, error.message, error.hint);
    (n as NodeError & { cause?: unknown; secureCode?: string }).cause = error;
    if (error instanceof SecureSocketError) (n as NodeError & { secureCode?: string }).secureCode = error.secureCode;
    return n;
  }
  return new NodeError("internal", error instanceof Error ? error.message : String(error));
}

type WriteCallback = (error?: Error | null) => void;

function addressOf(text: string | undefined): Address {
  const parsed = text === undefined ? null : parseAddress(text);
  if (!parsed?.ok) throw new NodeError("internal", `bad Pilot address ${String(text)}`);
  return parsed.value;
}

export class SecureSocket extends Duplex {
  /** The peer's Pilot address; undefined until the stream is connected. */
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  readonly remoteFamily = "pilot";
  readonly localAddress: string;
  localPort: number | undefined;
  /** True until the secure handshake is done. */
  connecting = true;
  /** Always true: data on this socket is encrypted with the channel's own keys (like tls.TLSSocket). */
  readonly encrypted = true;
  /** Names this channel (hex, 16 bytes; equal on both ends, different for every connection); set when established. */
  channelId: string | undefined;
  /** The peer's identity key (base64) the handshake was checked against; set when established. */
  peerIdentityKey: string | undefined;
  /** Plaintext bytes received. */
  bytesRead = 0;
  private plainWritten = 0;

  private channel: SecureChannel | null = null;
  private readonly role: "client" | "server";
  private readonly identity: SecureIdentity;
  private readonly handshakeTimeoutMs: number;
  private handshakeTimer: ReturnType<typeof setTimeout> | null = null;
  /** Writes made before the handshake finished. */
  private heldWrites: { chunks: Uint8Array[]; callback: WriteCallback } | null = null;
  private heldFinal: WriteCallback | null = null;
  private innerPaused = false;
  private sentEnd = false;
  private started = false;
  private timedOut = false;
  /** The client's last handshake message waits for the app's first write (one segment, no Nagle wait). */
  private holdOutput = false;

  /** @internal Made by `Driver.dialSecure`/`connectSecure` and by SecureServer. */
  constructor(
    private readonly inner: PilotSocket,
    role: "client" | "server",
    identity: SecureIdentity,
    options: SecureSocketOptions = {},
  ) {
    const hwm = options.highWaterMark ?? 64 * 1024;
    super({ allowHalfOpen: options.allowHalfOpen ?? false, readableHighWaterMark: hwm, writableHighWaterMark: hwm });
    this.role = role;
    this.identity = identity;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT;
    this.localAddress = inner.localAddress;
    inner.on("error", (error: Error) => this.destroy(error));
    inner.on("timeout", () => this.emit("timeout"));
    inner.on("close", () => this.innerClosed());
    this.handshakeTimer = setTimeout(() => {
      this.handshakeTimer = null;
      this.timedOut = true;
      this.giveUp(`the secure handshake did not finish within ${this.handshakeTimeoutMs} ms`);
    }, this.handshakeTimeoutMs);
    if (inner.connecting) inner.once("connect", () => this.start());
    else queueMicrotask(() => this.start());
  }

  /** Plaintext bytes written by the app and sealed. */
  get bytesWritten(): number {
    return this.plainWritten;
  }

  get pending(): boolean {
    return this.connecting;
  }

  get readyState(): ReadyState {
    return readyStateOf(this);
  }

  address(): PilotAddressInfo | Record<string, never> {
    return this.inner.address();
  }

  setNoDelay(noDelay = true): this {
    this.inner.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this;
  }

  /** Emits 'timeout' after `ms` without traffic on the stream (0 disables), like `net.Socket.setTimeout`. */
  setTimeout(ms: number, callback?: () => void): this {
    if (callback) {
      if (ms === 0) this.removeListener("timeout", callback);
      else this.once("timeout", callback);
    }
    this.inner.setTimeout(ms);
    return this;
  }

  ref(): this {
    this.inner.ref();
    return this;
  }

  unref(): this {
    this.inner.unref();
    if (this.handshakeTimer) this.handshakeTimer.unref?.();
    return this;
  }

  /** Ends the writable side (with the channel's authenticated end), then destroys once everything is written. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once("finish", () => this.destroy());
  }

  /** Closes with a reset of the underlying stream. */
  resetAndDestroy(): this {
    this.inner.resetAndDestroy();
    return this.destroy();
  }

  // -- the handshake ------------------------------------------------------------

  private async start(): Promise<void> {
    if (this.started || this.destroyed) return;
    this.started = true;
    const inner = this.inner;
    this.remoteAddress = inner.remoteAddress;
    this.remotePort = inner.remotePort;
    this.localPort = inner.localPort;
    let peerKey: Uint8Array;
    try {
      // The key the daemon pins for the address this stream really comes from.
      peerKey = await this.identity.peerKey(inner.remoteAddress!);
    } catch (error) {
      const e = toSocketError(error);
      this.destroy(new SecureSocketError("aborted", e.pilotCode, `cannot get the identity key of ${inner.remoteAddress}: ${e.message}`, { hint: e.hint, cause: error }));
      return;
    }
    if (this.destroyed) return;
    const local = { address: addressOf(inner.localAddress), port: inner.localPort! };
    const remote = { address: addressOf(inner.remoteAddress), port: inner.remotePort! };
    const channel = new SecureChannel({
      role: this.role,
      client: this.role === "client" ? local : remote,
      server: this.role === "client" ? remote : local,
      peerIdentityKey: peerKey,
    });
    this.channel = channel;
    inner.on("data", (chunk: Buffer) => {
      channel.receive(chunk);
      this.pump();
    });
    inner.on("end", () => {
      channel.finish();
      this.pump();
    });
    if (this.role === "client") channel.start();
    this.pump();
  }

  /** Sends what the channel wants sent and acts on its events. */
  private pump(): void {
    const channel = this.channel;
    if (!channel) return;
    // A failed channel's last words (an alert) leave with the stream's close, in _destroy.
    if (channel.state !== "failed" && !this.holdOutput) this.flushOutput();
    let event;
    while ((event = channel.pollEvent()) !== undefined) {
      switch (event.type) {
        case "sign": {
          this.identity.sign(event.hash).then(
            (signature) => {
              if (this.destroyed || channel.state !== "signing") return;
              channel.provideSignature(signature);
              if (this.role === "client") {
                // Established now: an app awaiting dialSecure writes in this turn, and its first
                // record then leaves with ClientAuth instead of waiting for ClientAuth's ACK (Nagle).
                this.holdOutput = true;
                setImmediate(() => {
                  this.holdOutput = false;
                  if (!this.destroyed && channel.state !== "failed") this.flushOutput();
                });
              }
              this.pump();
            },
            (error) => {
              if (this.destroyed) return;
              this.giveUp(`this node's daemon did not sign the secure handshake: ${toSocketError(error).message}`);
            },
          );
          break;
        }
        case "established":
          this.established(event.channelId);
          break;
        case "data":
          this.bytesRead += event.data.length;
          if (!this.push(Buffer.from(event.data.buffer, event.data.byteOffset, event.data.byteLength)) && !this.innerPaused) {
            this.innerPaused = true;
            this.inner.pause();
          }
          break;
        case "end":
          this.push(null);
          break;
        case "failed":
          this.failed(event.error);
          return;
      }
    }
  }

  private flushOutput(): void {
    const out = this.channel?.takeOutput();
    if (out && out.length > 0 && !this.inner.destroyed && this.inner.writable) this.inner.write(out);
  }

  private established(channelId: Uint8Array): void {
    if (this.handshakeTimer) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    this.channelId = Buffer.from(channelId).toString("hex");
    this.connecting = false;
    this.emit("connect");
    this.emit("ready");
    this.emit("secureConnect");
    const held = this.heldWrites;
    this.heldWrites = null;
    if (held) this.sealAndSend(held.chunks, held.callback);
    if (this.heldFinal) {
      const cb = this.heldFinal;
      this.heldFinal = null;
      this._final(cb);
    }
  }

  private giveUp(message: string): void {
    if (this.destroyed) return;
    if (this.channel) {
      this.channel.abort(message);
      this.pump(); // sends the alert (still handshaking) and fails
    } else {
      this.destroy(toSecureSocketError(new SecureChannelError("aborted", message), this.remotePort, this.timedOut));
    }
  }

  private failed(error: SecureChannelError): void {
    this.destroy(toSecureSocketError(error, this.remotePort, this.timedOut));
  }

  /**
   * The stream under us is gone. Errors came as 'error' and a cut as 'end'
   * (the channel calls that truncation) before this. After both
   * authenticated ends this is the expected close, and what the app has not
   * read yet stays readable; otherwise the stream was closed from outside
   * (the app closed its driver): like a PilotSocket then, a quiet destroy.
   */
  private innerClosed(): void {
    if (this.destroyed) return;
    const channel = this.channel;
    if (channel && channel.peerEnded && this.sentEnd) return;
    this.destroy();
  }

  // -- Duplex ----------------------------------------------------------------------

  override _read(): void {
    if (this.innerPaused) {
      this.innerPaused = false;
      this.inner.resume();
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.sealAndSend([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: WriteCallback): void {
    this.sealAndSend(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  private sealAndSend(chunks: Uint8Array[], callback: WriteCallback): void {
    const channel = this.channel;
    if (!channel || this.connecting) {
      this.heldWrites = { chunks, callback };
      return;
    }
    if (!channel.established) return callback(toSecureSocketError(channel.error ?? new SecureChannelError("aborted", "the secure channel is closed"), this.remotePort));
    try {
      for (const c of chunks) {
        channel.seal(c);
        this.plainWritten += c.length;
      }
    } catch (error) {
      return callback(error instanceof SecureChannelError ? toSecureSocketError(error, this.remotePort) : (error as Error));
    }
    // Completes when the daemon has taken the bytes: backpressure reaches the app.
    this.inner.write(channel.takeOutput(), (error) => callback(error ?? null));
  }

  override _final(callback: WriteCallback): void {
    const channel = this.channel;
    if (!channel || this.connecting) {
      this.heldFinal = callback;
      return;
    }
    if (!channel.established) return callback();
    channel.end();
    this.sentEnd = true;
    this.inner.end(channel.takeOutput(), () => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.handshakeTimer) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    const held = this.heldWrites;
    this.heldWrites = null;
    held?.callback(error ?? new PilotSocketError("closed", "the secure socket was destroyed", { code: "EPIPE" }));
    const inner = this.inner;
    const channel = this.channel;
    if (!inner.destroyed) {
      let last = channel ? channel.takeOutput() : new Uint8Array(0); // a handshake alert, if it failed
      if (!error && channel?.established && !this.sentEnd && inner.writable) {
        // Closed by the app without end(): still an authenticated end, as destroy() on a TCP socket is a FIN.
        channel.end();
        this.sentEnd = true;
        last = channel.takeOutput();
      }
      if (last.length > 0 && inner.writable) closeAfter(inner, last);
      else inner.destroy(error ?? undefined); // with an error: a reset
    }
    this.connecting = false;
    callback(error);
  }
}

/** Sends `last` and closes the stream once it is out (at most 2 s later, whatever happens). */
function closeAfter(inner: PilotSocket, last: Uint8Array): void {
  inner.on("error", () => {});
  const timer = setTimeout(() => inner.destroy(), 2000);
  timer.unref?.();
  inner.once("close", () => clearTimeout(timer));
  inner.end(last, () => inner.destroy());
}

export interface SecureServerEvents {
  connection: [socket: SecureSocket];
  handshakeError: [error: SecureSocketError | PilotSocketError, peer: { remoteAddress: string | undefined; remotePort: number | undefined }];
}

/**
 * A secure listener. Events:
 * - `'connection' (socket: SecureSocket)` once a connection's handshake succeeded;
 * - `'handshakeError' (error, {remoteAddress, remotePort})` when one failed (the stream is closed);
 * - `'error'` if the daemon goes away while listening; `'close'` once unbound.
 */
export class SecureServer extends EventEmitter {
  readonly port: number;
  /** Connections still in their handshake. */
  private readonly handshaking = new Set<SecureSocket>();

  /** @internal Made by `Driver.listenSecure`. */
  constructor(
    private readonly inner: PilotServer,
    identity: SecureIdentity,
    options: SecureSocketOptions = {},
  ) {
    super();
    this.port = inner.port;
    inner.on("connection", (raw: PilotSocket) => {
      const socket = new SecureSocket(raw, "server", identity, options);
      this.handshaking.add(socket);
      const onError = (error: PilotSocketError) => {
        this.handshaking.delete(socket);
        this.emit("handshakeError", error, { remoteAddress: raw.remoteAddress, remotePort: raw.remotePort });
      };
      socket.once("error", onError);
      socket.once("close", () => this.handshaking.delete(socket));
      socket.once("secureConnect", () => {
        socket.off("error", onError);
        this.handshaking.delete(socket);
        this.emit("connection", socket);
      });
    });
    inner.on("error", (error) => {
      if (this.listenerCount("error") > 0) this.emit("error", error);
    });
    inner.on("close", () => this.emit("close"));
  }

  get listening(): boolean {
    return this.inner.listening;
  }

  address(): PilotAddressInfo {
    return this.inner.address();
  }

  /** Unbinds the port; handshakes in progress are dropped, established connections live on. */
  close(callback?: (error?: Error) => void): Promise<void> {
    for (const s of this.handshaking) s.destroy();
    this.handshaking.clear();
    return this.inner.close(callback);
  }

  ref(): this {
    this.inner.ref();
    return this;
  }

  unref(): this {
    this.inner.unref();
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Waits for a connecting SecureSocket's handshake; rejects with a NodeError. */
export function whenSecure(socket: SecureSocket): Promise<SecureSocket> {
  return new Promise((resolve, reject) => {
    const done = () => {
      socket.off("error", onError);
      socket.off("close", onClose);
      socket.off("secureConnect", onConnect);
    };
    const onError = (error: Error) => {
      done();
      reject(toNodeError(error));
    };
    const onClose = () => {
      done();
      reject(new NodeError("closed", "the connection closed during the secure handshake"));
    };
    const onConnect = () => {
      done();
      resolve(socket);
    };
    socket.once("error", onError);
    socket.once("close", onClose);
    socket.once("secureConnect", onConnect);
  });
}
