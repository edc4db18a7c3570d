/**
 * Small helpers for commands that move bytes over Pilot streams: turning
 * socket errors into CliErrors, reading a whole message, and deadlines.
 */
import type { PilotSocket } from "../driver/index.ts";
import { CliError, type ErrorCodeName } from "./errors.ts";
import { toCliError } from "./daemon-client.ts";

/** A socket's error (PilotSocketError, with `pilotCode`), a NodeError or anything else as a CliError. */
export function asCliError(e: unknown): CliError {
  const err = e as { pilotCode?: string; message?: string; hint?: string } | null;
  if (err && typeof err.pilotCode === "string" && !(e instanceof CliError)) {
    if (err.pilotCode === "not_running") return new CliError("not_running", "the Pilot daemon went away", "start it with: pilot daemon start");
    return new CliError(err.pilotCode as ErrorCodeName, err.message ?? "connection failed", err.hint);
  }
  return toCliError(e);
}

/** Rejects with `timeout` after `ms` (none when ms is undefined), calling `onTimeout` first. */
export function deadline<T>(work: Promise<T>, ms: number | undefined, message: string, hint?: string, onTimeout?: () => void): Promise<T> {
  if (ms === undefined) return work;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new CliError("timeout", message, hint));
    }, ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

export interface Received {
  data: Buffer;
  /** Set when the connection failed before the peer finished. */
  error?: CliError;
}

/**
 * Reads until the peer half-closes (its FIN), at most `maxBytes` (then the
 * connection is reset and an `limit_exceeded` error is reported).
 */
export function readToEnd(socket: PilotSocket, maxBytes: number): Promise<Received> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (error?: CliError) => {
      if (done) return;
      done = true;
      resolve({ data: Buffer.concat(chunks, size), ...(error ? { error } : {}) });
    };
    socket.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        socket.destroy();
        finish(new CliError("limit_exceeded", `message larger than ${maxBytes} bytes; connection reset`));
        return;
      }
      chunks.push(chunk);
    });
    socket.once("end", () => finish());
    socket.once("error", (e) => finish(asCliError(e)));
    socket.once("close", () => finish(new CliError("connection_reset", "the connection closed before the peer finished sending")));
  });
}
