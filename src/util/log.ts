/**
 * Structured logs for long-running processes (daemon, rendezvous, gateway):
 * one line per event, `time level component msg key=value ...` for people, or
 * one JSON object per line with `--log-format json`. Writes are synchronous to
 * stderr, or through `sink` to the daemon's own log file (a RotatingLogFile,
 * src/util/rotating-log.ts), so nothing is lost on a crash. `parseLogLine`
 * reads either format back (`pilot logs`).
 */
import { writeSync } from "node:fs";

export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: "text" | "json";
  /** File descriptor to write to; default 2 (stderr). */
  fd?: number;
  /** Receives each line instead of `fd` (the daemon's rotating log file; tests capture lines). */
  sink?: (line: string) => void;
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === "bigint") return v.toString();
  return JSON.stringify(v) ?? "undefined";
}

export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? "info"];
  const json = options.format === "json";
  const fd = options.fd ?? 2;
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const time = new Date().toISOString();
    let line: string;
    if (json) {
      const record: Record<string, unknown> = { time, level, component, msg };
      for (const [k, v] of Object.entries(fields ?? {})) record[k] = v instanceof Error ? v.message : v;
      line = JSON.stringify(record, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
    } else {
      line = `${time} ${level.toUpperCase().padEnd(5)} ${component}: ${msg}`;
      for (const [k, v] of Object.entries(fields ?? {})) line += ` ${k}=${formatValue(v)}`;
    }
    if (options.sink) return options.sink(line);
    try {
      writeSync(fd, line + "\n");
    } catch {
      // A closed or full log must never take the process down.
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (sub) => createLogger(`${component}/${sub}`, options),
  };
}

export function parseLogLevel(text: string | undefined): LogLevel | undefined {
  return text === "debug" || text === "info" || text === "warn" || text === "error" ? text : undefined;
}

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** Is `level` at least `min` (warn passes a warn filter, and error does too)? */
export function levelAtLeast(level: LogLevel, min: LogLevel): boolean {
  return ORDER[level] >= ORDER[min];
}

/** One line of a log file, read back. */
export interface ParsedLogLine {
  /** The line as written. */
  readonly line: string;
  /** "text" or "json": a record this module wrote; "other": anything else (a start-up envelope, a crash's output). */
  readonly kind: "text" | "json" | "other";
  /** The record's level; for other lines, a guess that never hides a failure (see `parseLogLine`). */
  readonly level: LogLevel;
  readonly time?: string;
  readonly component?: string;
  readonly msg?: string;
  /** A JSON record's whole object (time, level, component, msg and its fields). */
  readonly record?: Record<string, unknown>;
}

const TEXT_RECORD = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (DEBUG|INFO|WARN|ERROR) +([^\s:]+): (.*)$/;

/**
 * Reads a log line of either format. Lines that are not records (the CLI's
 * `{"status":…}` envelopes at start-up, a crash's stack trace, stray output)
 * count as errors when they look like one (an error envelope, "error",
 * "panic", "exception", "fatal", a stack frame) and as info otherwise, so a level
 * filter never hides a crash.
 */
export function parseLogLine(line: string): ParsedLogLine {
  const text = TEXT_RECORD.exec(line);
  if (text) {
    const rest = text[4]!;
    return { line, kind: "text", level: text[2]!.toLowerCase() as LogLevel, time: text[1], component: text[3], msg: rest.replace(/ [A-Za-z_][\w.]*=.*$/, "") };
  }
  if (line.startsWith("{")) {
    try {
      const record = JSON.parse(line);
      if (record && typeof record === "object" && !Array.isArray(record)) {
        const level = parseLogLevel(record.level);
        if (level && typeof record.msg === "string") {
          return { line, kind: "json", level, time: typeof record.time === "string" ? record.time : undefined, component: typeof record.component === "string" ? record.component : undefined, msg: record.msg, record };
        }
        if (record.status === "error") return { line, kind: "other", level: "error" };
        if (record.status === "ok") return { line, kind: "other", level: "info" };
      }
    } catch {
      // not JSON after all
    }
  }
  return { line, kind: "other", level: /error|panic|exception|fatal|^\s+at /i.test(line) ? "error" : "info" };
}
