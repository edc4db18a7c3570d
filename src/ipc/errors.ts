/** Turning errors into wire errors and back, without trusting either side's strings. */
import { NodeError, type NodeErrorCode } from "../shared/errors.ts";
import type { WireError } from "./frames.ts";

/** Every NodeErrorCode, checked by the compiler to be complete. */
const KNOWN: Record<NodeErrorCode, true> = {
  invalid_argument: true,
  not_found: true,
  already_exists: true,
  port_in_use: true,
  connection_refused: true,
  connection_reset: true,
  unreachable: true,
  not_trusted: true,
  timeout: true,
  limit_exceeded: true,
  unauthorized: true,
  rate_limited: true,
  registry_unavailable: true,
  closed: true,
  quota_exceeded: true,
  too_large: true,
  invalid_state: true,
  not_running: true,
  internal: true,
};

export function isNodeErrorCode(code: string): code is NodeErrorCode {
  return Object.hasOwn(KNOWN, code);
}

/** What the daemon tells a client about a failure. Non-NodeErrors become `internal`. */
export function toWireError(error: unknown): WireError {
  if (error instanceof NodeError) {
    return error.hint === undefined
      ? { code: error.code, message: error.message }
      : { code: error.code, message: error.message, hint: error.hint };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "internal", message: message || "internal error" };
}

/** A NodeError from a wire error; codes this build does not know become `internal` (the text keeps the original). */
export function fromWireError(error: WireError): NodeError {
  if (isNodeErrorCode(error.code)) return new NodeError(error.code, error.message, error.hint);
  return new NodeError("internal", `${error.code}: ${error.message}`, error.hint);
}

export const START_DAEMON_HINT = "start it with `pilot daemon start` (or set PILOT_SOCKET / PILOT_HOME to the daemon you mean)";

export function notRunningError(socketPath: string, detail?: string): NodeError {
  return new NodeError(
    "not_running",
    `no Pilot daemon is listening on ${socketPath}${detail ? ` (${detail})` : ""}`,
    START_DAEMON_HINT,
  );
}

export function daemonGoneError(socketPath: string): NodeError {
  return new NodeError("not_running", `the Pilot daemon on ${socketPath} closed the connection`, START_DAEMON_HINT);
}

export function driverClosedError(): NodeError {
  return new NodeError("closed", "the driver was closed");
}
