/**
 * Decoders never throw on hostile input: they return a Result.
 * `DecodeError.code` is a stable, machine-readable reason that callers count
 * (wire) or report (CLI).
 */
export type Result<T, E = DecodeError> = { ok: true; value: T } | { ok: false; error: E };

export interface DecodeError {
  readonly code: string;
  readonly message: string;
}

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

export function fail(code: string, message: string): { ok: false; error: DecodeError } {
  return { ok: false, error: { code, message } };
}
