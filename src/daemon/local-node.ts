/**
 * The daemon's core as its IPC server sees it. The IPC server is a thin shell
 * that turns IPC frames into calls on a LocalNode and LocalNode callbacks into
 * IPC frames; it owns no protocol state of its own. Tests of the IPC layer may
 * drive it with an in-memory LocalNode; integration tests use the real daemon.
 *
 * Flow control is pull-based end to end: the IPC server calls `read()` on a
 * stream only while its client has credit, so an app that stops reading fills
 * that stream's receive buffer, the window it advertises to the peer closes,
 * and the remote sender stops: no other stream or client is affected.
 */
import type { Address } from "../protocol/address.ts";

/** Stable error codes shared by the daemon, the IPC protocol, the driver and the CLI. */
export type NodeErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "port_in_use"
  | "connection_refused"
  | "connection_reset"
  | "unreachable"
  | "not_trusted"
  | "timeout"
  | "limit_exceeded"
  | "unauthorized"
  | "rate_limited"
  | "registry_unavailable"
  | "closed"
  /** The object is not in a state that allows this (a task already running, a result already judged). */
  | "invalid_state"
  /** The local daemon is not running, or went away (raised by the driver, never by a LocalNode). */
  | "not_running"
  | "internal";

export class NodeError extends Error {
  constructor(
    readonly code: NodeErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "NodeError";
  }
}

export type StreamEvent =
  /** New bytes can be read. */
  | { type: "readable" }
  /** Send-buffer space freed after `write` returned less than asked. */
  | { type: "writable" }
  /** The peer half-closed (FIN) and every byte before it has been read. */
  | { type: "end" }
  /** The stream is finished: gracefully (no error) or with an error (reset, timeout, untrusted). */
  | { type: "closed"; error?: NodeError };

export interface StreamHandle {
  readonly id: number;
  readonly localPort: number;
  readonly remoteAddress: Address;
  readonly remotePort: number;
  /** Copies up to `data.length` bytes into the send buffer; returns how many it took (0 when full: wait for "writable"). */
  write(data: Uint8Array): number;
  /** Up to `max` bytes that have arrived, or null if none are buffered now. */
  read(max: number): Uint8Array | null;
  /** Half-close: a FIN goes after every buffered byte; reading continues. */
  shutdown(): void;
  /** Graceful close of both directions; unread bytes are discarded. */
  close(): void;
  /** Immediate reset (RST). */
  abort(): void;
  setNoDelay(noDelay: boolean): void;
  /**
   * Set by the owner; called on the daemon's event loop, never re-entrantly from write/read.
   * Events raised while it is null (e.g. data and FIN that arrive before a `dial` promise's
   * continuation has run) are held and delivered, in order, when the owner sets it.
   */
  onEvent: ((event: StreamEvent) => void) | null;
}

export interface DatagramMessage {
  readonly srcAddress: Address;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly data: Uint8Array;
}

export interface PortBinding {
  readonly port: number;
  /** Stops accepting; connections already accepted live on. */
  close(): void;
}

export interface LocalNode {
  readonly address: Address;
  readonly hostname: string | undefined;

  /** Binds a virtual port for stream connections. Errors: port_in_use, invalid_argument. */
  listen(port: number, onAccept: (stream: StreamHandle) => void): PortBinding;
  /** Opens a stream; resolves when ESTABLISHED. Errors: not_found, not_trusted, unreachable, connection_refused, timeout, limit_exceeded. */
  dial(target: Address, port: number, options?: { timeoutMs?: number }): Promise<StreamHandle>;

  /** Receives datagrams addressed to `port` (0 = pick an ephemeral port). Errors: port_in_use. */
  bindDatagrams(port: number, onDatagram: (message: DatagramMessage) => void): PortBinding;
  /** Sends one datagram; `srcPort` must be a port this caller bound, or 0 for an ephemeral one. */
  sendDatagram(srcPort: number, target: Address, dstPort: number, data: Uint8Array): Promise<void>;

  /**
   * Everything else: registry, trust and introspection operations, by name,
   * with JSON params and a JSON result (e.g. "info", "resolve", "find",
   * "set_hostname", "set_tags", "set_visibility", "peers", "connections",
   * "disconnect", "ping", "handshake", "approve", "reject", "untrust",
   * "pending", "trusted"). Errors are NodeErrors.
   */
  call(method: string, params: Record<string, unknown>): Promise<unknown>;
}
