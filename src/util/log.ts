/**
 * Structured logs for long-running processes (daemon, rendezvous, gateway):
 * one line per event, `time level component msg key=value ...` for people, or
 * one JSON object per line with `--log-format json`. Writes are synchronous to
 * stderr (or the log file the daemon redirects stderr to), so nothing is lost
 * on a crash.
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
  /** Captures lines instead of writing them (tests). */
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
