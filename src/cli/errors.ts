/**
 * Every failure a CLI command reports is a CliError: a stable machine-readable
 * code, a sentence for humans, and a hint that says what to do next.
 * Mistakes on the command line exit with 2: `usage` (the command line does
 * not match the command) and `invalid_argument` (a value that does not parse
 * or is out of range). Everything else exits with 1.
 */
export const ErrorCode = {
  InvalidArgument: "invalid_argument",
  Usage: "usage",
  NotFound: "not_found",
  AlreadyExists: "already_exists",
  NotRunning: "not_running",
  ConnectionFailed: "connection_failed",
  Unauthorized: "unauthorized",
  RateLimited: "rate_limited",
  Timeout: "timeout",
  Internal: "internal",
  PortInUse: "port_in_use",
  ConnectionRefused: "connection_refused",
  ConnectionReset: "connection_reset",
  Unreachable: "unreachable",
  NotTrusted: "not_trusted",
  LimitExceeded: "limit_exceeded",
  RegistryUnavailable: "registry_unavailable",
  Closed: "closed",
  QuotaExceeded: "quota_exceeded",
  TooLarge: "too_large",
  InvalidState: "invalid_state",
  TaskFailed: "task_failed",
} as const;
export type ErrorCodeName = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ERROR_DESCRIPTIONS: Record<ErrorCodeName, string> = {
  port_in_use: "the virtual port is already bound by another program",
  connection_refused: "nothing listens on that port of the remote agent",
  connection_reset: "the remote agent reset the connection",
  unreachable: "the agent's daemon did not answer (offline or unreachable)",
  not_trusted: "trust with that agent is missing or was revoked",
  limit_exceeded: "a connection or request limit was reached",
  registry_unavailable: "the registry could not be reached",
  closed: "the connection or daemon closed",
  quota_exceeded: "the receiver's storage for you (or in all) is full: it must read, clear or remove what it holds",
  too_large: "the message or file is larger than the receiver (or this node) accepts",
  invalid_state: "the object is not in a state that allows this (e.g. a task that is already running or finished)",
  task_failed: "the task ended without success (failed, declined, cancelled or expired); the message says which",
  invalid_argument: "an argument or option value is malformed or out of range: a usage mistake (exit 2)",
  usage: "the command line does not match the command's usage (exit 2)",
  not_found: "the named node, hostname, port or object does not exist or is not visible to you",
  already_exists: "the thing to create exists already (a running daemon, a taken hostname)",
  not_running: "the local daemon (or gateway) is not running",
  connection_failed: "a peer, the daemon or the registry could not be reached",
  unauthorized: "the registry or peer refused the request's signature or trust",
  rate_limited: "too many requests; wait and retry",
  timeout: "the operation did not finish in time",
  internal: "an unexpected failure; the message has details",
};

/** The codes of a wrong command line: exit 2. */
const USAGE_CODES: ReadonlySet<string> = new Set([ErrorCode.Usage, ErrorCode.InvalidArgument]);

export class CliError extends Error {
  /** Report only through the exit code (e.g. `daemon status --check`). */
  silent = false;
  /** The exit code when it is not the code's own (a damaged file is invalid_argument, but not a usage mistake). */
  exitOverride?: number;

  constructor(
    readonly code: ErrorCodeName,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "CliError";
  }

  get exitCode(): number {
    return this.exitOverride ?? (USAGE_CODES.has(this.code) ? 2 : 1);
  }
}

/** A file of ours that does not parse (config.json): invalid_argument, but exit 1, since the command line is fine. */
export function fileError(message: string, hint?: string): CliError {
  const e = new CliError(ErrorCode.InvalidArgument, message, hint);
  e.exitOverride = 1;
  return e;
}

export function usageError(message: string, hint?: string): CliError {
  return new CliError(ErrorCode.Usage, message, hint);
}
