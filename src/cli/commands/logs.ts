/**
 * `pilot logs`: the daemon's log file, `$PILOT_HOME/pilot.log`: the last N
 * lines (reaching back into the rotated files pilot.log.1.. when the current
 * one has fewer), filtered by level, and followed through rotation with -f.
 * Also the log's rotation settings (config log_max_size, log_keep) and the
 * one line a failed start-up leaves in the log when stderr is elsewhere.
 */
import { appendFileSync, closeSync, existsSync, fstatSync, openSync, readSync, statSync, writeSync } from "node:fs";
import type { CommandSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { badValue, byteSizeOption, intOption, logLevelOption } from "../args.ts";
import { pilotPaths } from "../../util/paths.ts";
import { createLogger, levelAtLeast, parseLogLine, type LogLevel, type ParsedLogLine } from "../../util/log.ts";
import { DEFAULT_ROTATION, ROTATION_LIMITS, rotatedPaths, type RotationPolicy } from "../../util/rotating-log.ts";
import type { Output } from "../output.ts";

/** How often -f looks at the file. */
const FOLLOW_POLL_MS = 200;
const CHUNK = 64 * 1024;
/** A "line" longer than this (no newline in sight) is cut into pieces rather than held whole. */
const MAX_LINE = 1024 * 1024;

/** The rotation policy from config values (log_max_size, log_keep); bad values are invalid_argument. */
export function logRotationFrom(config: { log_max_size?: string; log_keep?: string }): RotationPolicy {
  let maxBytes: number | undefined;
  try {
    maxBytes = byteSizeOption(config.log_max_size, "log_max_size", { min: ROTATION_LIMITS.minBytes, max: ROTATION_LIMITS.maxBytes });
  } catch (e) {
    throw badValue((e as Error).message, "for example: pilot config --set log_max_size=10MiB");
  }
  const keep = intOption(config.log_keep, "log_keep", 0, ROTATION_LIMITS.maxKeep, DEFAULT_ROTATION.keep);
  return { maxBytes: maxBytes ?? DEFAULT_ROTATION.maxBytes, keep: keep ?? DEFAULT_ROTATION.keep };
}

/** Is this process's stderr the file at `path` (a detached daemon's, or launchd's StandardErrorPath)? */
function stderrIs(path: string): boolean {
  try {
    const a = fstatSync(2);
    const b = statSync(path);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/**
 * Appends a start-up failure to the log as one ERROR record, unless stderr is
 * that file already (it then holds the error envelope). Never throws.
 */
export function appendStartupError(path: string, error: unknown, format: "text" | "json"): void {
  if (stderrIs(path)) return;
  try {
    const e = error as { code?: string; message?: string; hint?: string };
    const log = createLogger("daemon", { format, sink: (line) => appendFileSync(path, line + "\n", { mode: 0o600 }) });
    log.error("start-up failed", { ...(e?.code ? { code: e.code } : {}), error: e?.message ?? String(error), ...(e?.hint ? { hint: e.hint } : {}) });
  } catch {
    // the log is out of reach; stderr still has the error
  }
}

/** The rotated files of `path` that exist, newest first (pilot.log.1, .2, ...). */
function existingRotated(path: string): string[] {
  const found: string[] = [];
  for (const p of rotatedPaths(path, ROTATION_LIMITS.maxKeep)) {
    if (!existsSync(p)) break;
    found.push(p);
  }
  return found;
}

/** The lines of a file from the last to the first (empty lines skipped), read in chunks from the end. */
function* linesBackward(path: string): Generator<string> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return;
  }
  try {
    let pos = fstatSync(fd).size;
    let carry = Buffer.alloc(0);
    while (pos > 0) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      readSync(fd, chunk, 0, len, pos);
      const data = carry.length ? Buffer.concat([chunk, carry]) : chunk;
      let end = data.length;
      for (let i = data.length - 1; i >= 0; i--) {
        if (data[i] !== 0x0a) continue;
        if (end > i + 1) yield data.subarray(i + 1, end).toString("utf8");
        end = i;
      }
      carry = data.subarray(0, end);
      if (carry.length > MAX_LINE) {
        yield carry.toString("utf8");
        carry = Buffer.alloc(0);
      }
    }
    if (carry.length) yield carry.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** The last `n` lines that pass `accept`, oldest first, from `path` and then its rotated files. */
export function lastLines(path: string, n: number, accept: (p: ParsedLogLine) => boolean = () => true): ParsedLogLine[] {
  const picked: ParsedLogLine[] = [];
  if (n <= 0) return picked;
  for (const file of [path, ...existingRotated(path)]) {
    for (const line of linesBackward(file)) {
      const parsed = parseLogLine(line);
      if (!accept(parsed)) continue;
      picked.push(parsed);
      if (picked.length >= n) return picked.reverse();
    }
  }
  return picked.reverse();
}

interface FileId {
  dev: number;
  ino: number;
}

function fileId(path: string): (FileId & { size: number }) | null {
  try {
    const s = statSync(path);
    return { dev: s.dev, ino: s.ino, size: s.size };
  } catch {
    return null;
  }
}

const sameFile = (a: FileId | null, b: FileId | null) => a !== null && b !== null && a.dev === b.dev && a.ino === b.ino;

/** The identities of path.1, path.2, ... that exist, newest first. */
function rotatedIds(path: string): FileId[] {
  const ids: FileId[] = [];
  for (const p of rotatedPaths(path, ROTATION_LIMITS.maxKeep)) {
    const id = fileId(p);
    if (!id) break;
    ids.push(id);
  }
  return ids;
}

/**
 * Follows `path` like `tail -F`, from its current end, calling `onLine` for
 * every complete line. Through our own rotation (copy to path.1, truncate in
 * place) it first reads what it had not read yet from the copies, found by
 * where the previous path.1 went (several rotations between two looks are
 * fine while fewer than the files kept); through a rename (logrotate's
 * default) it drains the old file before the new one. Resolves when
 * `signal` aborts.
 */
export async function followLog(path: string, onLine: (line: string) => void, signal: AbortSignal, options: { pollMs?: number } = {}): Promise<void> {
  const pollMs = options.pollMs ?? FOLLOW_POLL_MS;
  let fd: number | null = null;
  let id: FileId | null = null;
  let offset = 0;
  let partial = "";
  let lastRotated = rotatedIds(path);

  const emit = (text: string) => {
    const parts = (partial + text).split("\n");
    partial = parts.pop()!;
    if (partial.length > MAX_LINE) parts.push(partial), (partial = "");
    for (const p of parts) if (p !== "") onLine(p);
  };
  /** Reads `file` (an open fd or a path) from `from` to its end; returns the new offset. */
  const readFrom = (source: number | string, from: number): number => {
    let f: number;
    try {
      f = typeof source === "number" ? source : openSync(source, "r");
    } catch {
      return from;
    }
    try {
      const buf = Buffer.alloc(CHUNK);
      let at = from;
      for (;;) {
        const n = readSync(f, buf, 0, CHUNK, at);
        if (n <= 0) break;
        emit(buf.subarray(0, n).toString("utf8"));
        at += n;
      }
      return at;
    } finally {
      if (typeof source !== "number") closeSync(f);
    }
  };
  const open = (): boolean => {
    try {
      fd = openSync(path, "r");
      const s = fstatSync(fd);
      id = { dev: s.dev, ino: s.ino };
      return true;
    } catch {
      fd = null;
      id = null;
      return false;
    }
  };

  // Start at the current end: what is there already is the caller's (-n) to show.
  if (open()) offset = fstatSync(fd!).size;
  while (!signal.aborted) {
    const now = fileId(path);
    const nowRotated = rotatedIds(path);
    const newCopy = nowRotated.length > 0 && !sameFile(nowRotated[0]!, lastRotated[0] ?? null);
    if (fd === null) {
      if (now && open()) offset = 0;
    } else if (now && !sameFile(now, id)) {
      // Renamed away and replaced: finish the old file, then start the new one from its beginning.
      readFrom(fd, offset);
      closeSync(fd);
      fd = null;
      if (open()) offset = 0;
    } else if (newCopy || (now && now.size < offset)) {
      // Copied and truncated in place, once or more: the previous path.1 moved to path.(k+1), so
      // path.k holds the rest of what we were reading, and path.(k-1) .. path.1 came after it.
      const copies = rotatedPaths(path, nowRotated.length);
      if (newCopy) {
        const k = lastRotated.length === 0 ? nowRotated.length : nowRotated.findIndex((r) => sameFile(r, lastRotated[0]!));
        if (k < 0) for (let i = copies.length - 1; i >= 0; i--) readFrom(copies[i]!, 0); // rotated past all kept copies: what is left
        else if (k > 0) {
          readFrom(copies[k - 1]!, offset);
          for (let i = k - 2; i >= 0; i--) readFrom(copies[i]!, 0);
        }
      }
      offset = 0;
    }
    lastRotated = nowRotated;
    if (fd !== null) offset = readFrom(fd, offset);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, pollMs);
      signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    });
  }
  if (fd !== null) closeSync(fd);
}

/** What `--json` prints for one line: a JSON record's own fields, a text record's parts, or just the line. */
function lineData(p: ParsedLogLine): Record<string, unknown> {
  if (p.kind === "json") return p.record!;
  if (p.kind === "text") return { time: p.time, level: p.level, component: p.component, msg: p.msg, line: p.line };
  return { line: p.line };
}

/** stdout's reader went away (`pilot logs -f | head`): stop following. */
class ReaderGone extends Error {}

/** One line on stdout, as Output writes it, but saying when the reader has gone (EPIPE) instead of swallowing it. */
function show(out: Output, p: ParsedLogLine): void {
  const bytes = Buffer.from((out.json ? JSON.stringify({ status: "ok", data: lineData(p) }) : p.line) + "\n");
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(1, bytes, off);
    } catch (e: any) {
      if (e?.code === "EAGAIN") continue;
      if (e?.code === "EPIPE") throw new ReaderGone();
      throw e;
    }
  }
}

export const logsCommand: CommandSpec = {
  name: "logs",
  description: "Show the daemon's log ($PILOT_HOME/pilot.log): the last lines, filtered by level, or followed with -f",
  options: [
    { flags: "-n, --lines <n>", description: "show the last N lines (default 50; 0 with -f: only new lines); older lines come from the rotated files pilot.log.1.." },
    { flags: "-f, --follow", description: "keep printing lines as the daemon writes them, through rotation, until Ctrl-C" },
    { flags: "--level <level>", description: "only lines at this level or above: debug, info, warn (warn and error) or error" },
  ],
  examples: [
    "pilot logs                    # the last 50 lines",
    "pilot logs -f                 # follow, like tail -F",
    "pilot logs -n 200 --level warn   # the last 200 warnings and errors",
    "pilot --json logs -n 5        # one envelope per line, the record's fields parsed",
  ],
  returns: {
    "(one envelope per line)": "a JSON-format record: its own fields (time, level, component, msg, ...); a text record: {time, level, component, msg, line}; any other line (start-up envelopes, a crash's output): {line}",
  },
  errors: ["not_found", "unauthorized", "invalid_argument"],
  async run({ out }, _args, o) {
    const n = intOption(o.lines, "--lines", 0, 1_000_000, 50) ?? 50;
    const min: LogLevel | undefined = logLevelOption(o.level, "--level");
    const accept = (p: ParsedLogLine) => min === undefined || levelAtLeast(p.level, min);
    const path = pilotPaths().logFile;
    if (!existsSync(path) && !o.follow) {
      throw new CliError("not_found", `no daemon log at ${path}`, "the daemon writes it once started with: pilot daemon start (a --foreground daemon logs to stderr unless --log-to file)");
    }
    if (existsSync(path)) {
      try {
        closeSync(openSync(path, "r"));
      } catch (e: any) {
        throw new CliError("unauthorized", `cannot read ${path}: ${e?.code === "EACCES" ? "permission denied" : e?.message}`, "the log belongs to the daemon's user: run this as that user (or with sudo)");
      }
    }
    try {
      for (const p of lastLines(path, n, accept)) show(out, p);
    } catch (e) {
      if (e instanceof ReaderGone) return;
      throw e;
    }
    if (!o.follow) return;
    if (!existsSync(path)) out.progress(`waiting for ${path} to appear...`);
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      await followLog(
        path,
        (line) => {
          const p = parseLogLine(line);
          if (!accept(p) || stop.signal.aborted) return;
          try {
            show(out, p);
          } catch (e) {
            if (e instanceof ReaderGone) stop.abort();
            else throw e;
          }
        },
        stop.signal,
      );
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  },
};
