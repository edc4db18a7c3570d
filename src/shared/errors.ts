/**
 * The errors every layer speaks: the daemon raises them, the IPC protocol
 * carries their codes, the SDK rejects with them, the CLI prints them.
 */

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
  /** A peer's share of a service's storage (or the node's total) is used up. */
  | "quota_exceeded"
  /** Larger than the service accepts at all. */
  | "too_large"
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
