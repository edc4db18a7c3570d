/**
 * The gateway's errors: a stable code (the same names the CLI and the daemon
 * use), a sentence for people and a hint saying what to do next. They cross
 * the control socket as `{code, message, hint}`.
 */
export type GatewayErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "not_running"
  | "unauthorized"
  | "port_in_use"
  | "limit_exceeded"
  | "timeout"
  | "internal";

export class GatewayError extends Error {
  constructor(
    readonly code: GatewayErrorCode | string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "GatewayError";
  }

  toJSON(): { code: string; message: string; hint?: string } {
    return { code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}) };
  }
}

/** Any thrown value as a GatewayError; errors with a `code` and `hint` (NodeError) keep them. */
export function asGatewayError(e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  const err = e as { code?: unknown; message?: unknown; hint?: unknown } | null;
  if (err && typeof err.code === "string" && /^[a-z_]+$/.test(err.code) && typeof err.message === "string") {
    return new GatewayError(err.code, err.message, typeof err.hint === "string" ? err.hint : undefined);
  }
  return new GatewayError("internal", e instanceof Error ? e.message : String(e));
}
