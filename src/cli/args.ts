/**
 * Reading command-line values the same way in every command: targets, ports,
 * counts, durations, sizes and free text. A malformed value is
 * `invalid_argument` (exit 1) with a hint showing a good one; a missing
 * required value is a usage error (exit 2).
 */
import { formatAddress } from "../protocol/address.ts";
import { parseTarget } from "../driver/target.ts";
import { NodeError } from "../daemon/local-node.ts";
import { CliError, usageError } from "./errors.ts";

/**
 * A target as the daemon takes it: a full address `N:NNNN.HHHH.LLLL`, a bare
 * node id (read as network 0), or a hostname. Addresses come back normalised,
 * so `42`, `0000.0000.002A` and `0:0000.0000.002A` all name the same node.
 */
export function targetArg(text: string | undefined): string {
  if (text === undefined || text === "") throw usageError("a target is required", "name a node by address (0:0000.0000.002A), node id (42) or hostname (agent-b)");
  try {
    const t = parseTarget(text);
    return t.kind === "address" ? formatAddress(t.address) : t.hostname;
  } catch (e) {
    if (e instanceof NodeError) throw new CliError("invalid_argument", e.message, "name a node by address (0:0000.0000.002A), node id (42) or hostname (agent-b)");
    throw e;
  }
}

/** A virtual port, 1-65535 (port 0 means "any", which no command here wants). */
export function portArg(value: unknown, what = "port"): number {
  const text = String(value ?? "");
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new CliError("invalid_argument", `${what} "${text}" is not a port (1-65535)`, "ports are numbers such as 7 (echo), 80 (http) or 1000");
  return n;
}

/** A positive integer option such as --count; undefined when absent. */
export function countOption(value: unknown, flag: string, max = 1_000_000): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= max)) throw new CliError("invalid_argument", `${flag} must be a whole number from 1 to ${max}, got "${text}"`, `for example: ${flag} 3`);
  return n;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration in ms from "250ms", "1.5s", "2m", "1h" or a bare number of
 * seconds ("0.2"). undefined when absent; `allowZero` for intervals.
 */
export function durationOption(value: unknown, flag: string, options: { allowZero?: boolean; maxMs?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  const m = /^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(ms|s|m|h)?$/.exec(text);
  const ms = m ? Number(m[1]) * UNITS[m[2] ?? "s"]! : NaN;
  const max = options.maxMs ?? 24 * 3_600_000;
  if (!Number.isFinite(ms) || ms > max || ms < 0 || (ms === 0 && !options.allowZero)) {
    throw new CliError("invalid_argument", `${flag} must be a duration such as 500ms, 2s or 1m (a bare number is seconds), got "${text}"`, `for example: ${flag} 5s`);
  }
  return Math.round(ms);
}

/** A non-negative integer such as --size, with an upper bound. */
export function sizeOption(value: unknown, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= max)) throw new CliError("invalid_argument", `${flag} must be a whole number from 0 to ${max}, got "${text}"`);
  return n;
}

/**
 * The exact text the user typed for `--name` (cac reads "007" as 7 and "" as
 * 0; messages must arrive as typed). Falls back to the parsed value.
 */
export function textOption(options: Record<string, any>, name: string, argv: readonly string[] = process.argv.slice(2)): string | undefined {
  const end = argv.indexOf("--");
  const args = end < 0 ? argv : argv.slice(0, end);
  let found: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    // Like the parser: the next word is the value unless it is another flag.
    if (a === `--${name}` && i + 1 < args.length && !args[i + 1]!.startsWith("-")) found = args[i + 1];
    else if (a.startsWith(`--${name}=`)) found = a.slice(name.length + 3);
  }
  if (found !== undefined) return found;
  const parsed = options[name];
  if (parsed === undefined || parsed === true) return undefined;
  return Array.isArray(parsed) ? String(parsed[parsed.length - 1]) : String(parsed);
}

/** A required option: missing is a usage error (exit 2). */
export function requireText(options: Record<string, any>, name: string, example: string): string {
  const text = textOption(options, name);
  if (text === undefined) throw usageError(`--${name} is required`, `for example: ${example}`);
  return text;
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1 << 20, mb: 1 << 20, mib: 1 << 20, g: 1 << 30, gb: 1 << 30, gib: 1 << 30 };

/** A size in bytes from "64MiB", "512k", "1G" or a bare number of bytes; undefined when absent. Bad values are usage errors. */
export function byteSizeOption(value: unknown, flag: string, bounds: { min: number; max: number }): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
  const show = (b: number) => (b % (1 << 20) === 0 ? `${b / (1 << 20)}MiB` : `${Math.round(b / 1024)}KiB`);
  if (!(n >= bounds.min && n <= bounds.max)) {
    throw usageError(`${flag} must be a size from ${show(bounds.min)} to ${show(bounds.max)} (such as 64MiB or 512KiB), got "${text}"`, `for example: ${flag} 64MiB`);
  }
  return n;
}
