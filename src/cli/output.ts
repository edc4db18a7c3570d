/**
 * What a command prints. In JSON mode every result is one line on stdout:
 * `{"status":"ok","data":…}`; every error one line on stderr:
 * `{"status":"error","code":…,"message":…,"hint":…}`. In text mode results are
 * rendered for people (each command supplies its renderer) and errors are
 * `error: …` / `hint: …` on stderr. Writes are synchronous so nothing is lost at exit.
 */
import { writeSync } from "node:fs";
import { CliError } from "./errors.ts";

export interface Output {
  readonly json: boolean;
  result(data: unknown, text?: string | ((data: any) => string)): void;
  /** A line for people on stdout as it happens (one probe, one message); nothing in JSON mode. */
  line(text: string): void;
  /** Progress for people; silent in JSON mode (stderr, so stdout stays parseable). */
  progress(message: string): void;
  error(error: CliError): void;
}

function writeLine(fd: number, line: string): void {
  const bytes = Buffer.from(line + "\n");
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(fd, bytes, off);
    } catch (e: any) {
      if (e?.code === "EAGAIN") continue;
      if (e?.code === "EPIPE") return;
      throw e;
    }
  }
}

export function createOutput(json: boolean): Output {
  return {
    json,
    result(data, text) {
      if (json) {
        writeLine(1, JSON.stringify({ status: "ok", data: data ?? {} }));
        return;
      }
      const rendered = typeof text === "function" ? text(data) : (text ?? JSON.stringify(data, null, 2));
      if (rendered !== "") writeLine(1, rendered);
    },
    line(text) {
      if (!json) writeLine(1, text);
    },
    progress(message) {
      if (!json) writeLine(2, message);
    },
    error(error) {
      if (json) {
        const envelope: Record<string, string> = { status: "error", code: error.code, message: error.message };
        if (error.hint) envelope.hint = error.hint;
        writeLine(2, JSON.stringify(envelope));
        return;
      }
      writeLine(2, `error: ${error.message}`);
      if (error.hint) writeLine(2, `hint:  ${error.hint}`);
    },
  };
}
