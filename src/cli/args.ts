/**
 * Reading command-line values the same way in every command: targets, ports,
 * port lists, counts, sizes, rates, durations, choices, subnets and free
 * text. A value that does not parse or is out of range is `invalid_argument`,
 * a usage mistake (exit 2), with a hint showing a good one; a missing
 * required value is `usage` (exit 2).
 *
 * Numbers are read from the text as typed, not from the option parser's
 * value: it would turn "1e3" into 1000, "0x10" into 16 and "" into 0.
 */
import { formatByteSize, parseByteSize } from "../util/byte-size.ts";
import { formatAddress } from "../protocol/address.ts";
import { parseTarget } from "../driver/target.ts";
import { NodeError } from "../daemon/local-node.ts";
import { parseIPv4, parseSubnet, type Subnet } from "../gateway/subnet.ts";
import { parseLogLevel, type LogLevel } from "../util/log.ts";
import { CliError, usageError } from "./errors.ts";

/** A bad value on the command line (exit 2). */
export function badValue(message: string, hint?: string): CliError {
  return new CliError("invalid_argument", message, hint);
}

/** The option's text as typed (its last occurrence), for `--flag` read into `value`; undefined when absent. */
export function optionText(value: unknown, flag: string): string | undefined {
  if (value === undefined) return undefined;
  const name = flag.replace(/^--/, "");
  return textOption({ [name]: value }, name) ?? String(value);
}

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
    if (e instanceof NodeError) throw badValue(e.message, "name a node by address (0:0000.0000.002A), node id (42) or hostname (agent-b)");
    throw e;
  }
}

/** A virtual port, 1-65535 (port 0 means "any", which no command here wants). */
export function portArg(value: unknown, what = "port"): number {
  const text = String(value ?? "");
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw badValue(`${what} "${text}" is not a port (1-65535)`, "ports are numbers such as 7 (echo), 80 (http) or 1000");
  return n;
}

/** A whole-number option from `min` to `max`; undefined when absent. */
export function intOption(value: unknown, flag: string, min: number, max: number, example = Math.max(min, 3)): number | undefined {
  const text = optionText(value, flag);
  if (text === undefined) return undefined;
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw badValue(`${flag} must be a whole number from ${min} to ${max}, got "${text}"`, `for example: ${flag} ${example}`);
  return n;
}

/** A positive integer option such as --count; undefined when absent. */
export function countOption(value: unknown, flag: string, max = 1_000_000): number | undefined {
  return intOption(value, flag, 1, max);
}

/** A non-negative integer such as --size, with an upper bound. */
export function sizeOption(value: unknown, flag: string, max: number): number | undefined {
  return intOption(value, flag, 0, max, Math.min(max, 64));
}

/** A positive decimal such as a rate (--registration-rate 0.5), at most `max`; undefined when absent. */
export function rateOption(value: unknown, flag: string, max: number): number | undefined {
  const text = optionText(value, flag);
  if (text === undefined) return undefined;
  const n = /^([0-9]{1,12}(\.[0-9]{1,6})?|\.[0-9]{1,6})$/.test(text) ? Number(text) : NaN;
  if (!(n > 0 && n <= max)) throw badValue(`${flag} must be a number above 0 and at most ${max}, got "${text}"`, `for example: ${flag} 100`);
  return n;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration in ms from "250ms", "1.5s", "2m", "1h", "30d" or a bare number of
 * seconds ("0.2"). undefined when absent; `allowZero` for intervals.
 */
export function durationOption(value: unknown, flag: string, options: { allowZero?: boolean; maxMs?: number } = {}): number | undefined {
  const raw = optionText(value, flag);
  if (raw === undefined) return undefined;
  const text = raw.trim();
  const m = /^([0-9]{1,12}(?:\.[0-9]{1,6})?|\.[0-9]{1,6})(ms|s|m|h|d)?$/.exec(text);
  const ms = m ? Number(m[1]) * UNITS[m[2] ?? "s"]! : NaN;
  const max = options.maxMs ?? 24 * 3_600_000;
  if (!Number.isFinite(ms) || ms > max || ms < 0 || (ms === 0 && !options.allowZero)) {
    throw badValue(`${flag} must be a duration such as 500ms, 2s or 1m (a bare number is seconds; at most ${max / 1000} s), got "${text}"`, `for example: ${flag} 5s`);
  }
  return Math.round(ms);
}

/** One of a fixed set of words (--log-format text|json); undefined when absent. */
export function choiceOption<T extends string>(value: unknown, flag: string, choices: readonly T[], example: T = choices[0]!): T | undefined {
  const text = optionText(value, flag);
  if (text === undefined) return undefined;
  if (!(choices as readonly string[]).includes(text)) {
    const list = choices.length === 2 ? `${choices[0]} or ${choices[1]}` : `${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}`;
    throw badValue(`${flag} must be ${list}, got "${text}"`, `for example: ${flag} ${example}`);
  }
  return text as T;
}

/** --log-level debug|info|warn|error; undefined when absent. */
export function logLevelOption(value: unknown, flag = "--log-level"): LogLevel | undefined {
  const level = choiceOption(value, flag, ["debug", "info", "warn", "error"] as const, "info");
  return level === undefined ? undefined : parseLogLevel(level);
}

/** `--ports 80,443,8080` (option `name` of `o`): distinct ports, sorted; undefined when absent. */
export function portsOption(o: Record<string, any>, name = "ports", max = 32): number[] | undefined {
  if (o[name] === undefined) return undefined;
  // As typed: the parser reads "" as 0 and "80,443" as text, but "80" as a number.
  const text = textOption(o, name) ?? "";
  const parts = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (parts.length === 0) throw badValue(`--${name} needs at least one port`, `for example: --${name} 80,443`);
  const ports = [...new Set(parts.map((p) => portArg(p, `--${name} entry`)))].sort((a, b) => a - b);
  if (ports.length > max) throw badValue(`--${name} lists ${ports.length} ports; at most ${max}`, `for example: --${name} 80,443`);
  return ports;
}

/** `--subnet 10.4.0.0/16`: an IPv4 subnet for the gateway's local IPs; undefined when absent. */
export function subnetOption(value: unknown, flag = "--subnet"): Subnet | undefined {
  if (value === undefined || value === true) return undefined;
  const r = parseSubnet(optionText(value, flag) ?? "");
  if (!r.ok) throw badValue(r.message, `for example: ${flag} 10.4.0.0/16, or without root ${flag} 127.77.0.0/16`);
  return r.subnet;
}

/** `--ip 10.4.0.7`: an IPv4 address, as typed; undefined when absent. */
export function ipv4Option(value: unknown, flag = "--ip"): string | undefined {
  const text = optionText(value, flag);
  if (text === undefined) return undefined;
  if (parseIPv4(text) === null) throw badValue(`${flag} "${text}" is not an IPv4 address`, `for example: ${flag} 10.4.0.7`);
  return text;
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


/** A size in bytes from "64MiB", "512k", "1G" or a bare number of bytes; undefined when absent. Bad values are usage errors. */
export function byteSizeOption(value: unknown, flag: string, bounds: { min: number; max: number }): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  const n = parseByteSize(text);
  if (!(n >= bounds.min && n <= bounds.max)) {
    throw usageError(`${flag} must be a size from ${formatByteSize(bounds.min)} to ${formatByteSize(bounds.max)} (such as 64MiB or 512KiB), got "${text}"`, `for example: ${flag} 64MiB`);
  }
  return n;
}
