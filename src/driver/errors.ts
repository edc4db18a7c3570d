/**
 * Errors the driver raises. Promise-returning calls reject with a NodeError
 * (stable `code`, human `message`, `hint` saying what to do next). Sockets
 * emit 'error' with a PilotSocketError whose `code` is the errno-style name
 * `net.Socket` users and HTTP stacks test for (ECONNRESET, ECONNREFUSED, ...)
 * and whose `pilotCode` is the NodeError code.
 */
import { NodeError, type NodeErrorCode } from "../shared/errors.ts";

export { NodeError, type NodeErrorCode };

const ERRNO: Record<NodeErrorCode, string> = {
  invalid_argument: "EINVAL",
  not_found: "ENOTFOUND",
  already_exists: "EEXIST",
  port_in_use: "EADDRINUSE",
  connection_refused: "ECONNREFUSED",
  connection_reset: "ECONNRESET",
  unreachable: "EHOSTUNREACH",
  not_trusted: "EACCES",
  timeout: "ETIMEDOUT",
  limit_exceeded: "ENOBUFS",
  unauthorized: "EACCES",
  rate_limited: "EAGAIN",
  registry_unavailable: "EAI_AGAIN",
  closed: "ECONNRESET",
  quota_exceeded: "EDQUOT",
  too_large: "EFBIG",
  invalid_state: "EPERM",
  not_running: "ECONNRESET",
  internal: "EIO",
};

/** An error on a PilotSocket or PilotServer, shaped like the errors of node:net. */
export class PilotSocketError extends Error {
  /** errno-style code: ECONNRESET, ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENOTFOUND, EPIPE, ... */
  readonly code: string;
  /** The Pilot error code behind it. */
  readonly pilotCode: NodeErrorCode;
  readonly hint: string | undefined;
  readonly syscall = "pilot";

  constructor(pilotCode: NodeErrorCode, message: string, options: { hint?: string; code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PilotSocketError";
    this.pilotCode = pilotCode;
    this.code = options.code ?? ERRNO[pilotCode];
    this.hint = options.hint;
  }
}

/** The socket-style error for a NodeError (or anything thrown). */
export function toSocketError(error: unknown): PilotSocketError {
  if (error instanceof PilotSocketError) return error;
  if (error instanceof NodeError) return new PilotSocketError(error.code, error.message, { hint: error.hint, cause: error });
  return new PilotSocketError("internal", error instanceof Error ? error.message : String(error), { cause: error });
}

/** Writing to a stream the peer or daemon has finished. */
export function brokenPipeError(): PilotSocketError {
  return new PilotSocketError("closed", "write after the connection was closed", { code: "EPIPE" });
}
