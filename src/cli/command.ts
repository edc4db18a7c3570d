/**
 * A command is declared once: its place (group + name), usage, options, what it
 * returns and which errors it can give. The dispatcher turns the declarations
 * into cac parsers and help; `pilot context` turns them into a machine-readable
 * catalogue. Nothing about a command is written twice.
 */
import type { Output } from "./output.ts";
import type { ErrorCodeName } from "./errors.ts";

export interface OptionSpec {
  /** cac syntax: "--count <n>", "--public", "-c, --count <n>". */
  readonly flags: string;
  readonly description: string;
  readonly default?: unknown;
}

export interface CommandContext {
  readonly out: Output;
  /** How the user invoked us: "pilot" or "pilotctl". */
  readonly programName: string;
}

export interface CommandSpec {
  readonly group?: string;
  readonly name: string;
  /** Positional arguments in cac syntax: "<target> [port]", "<tags...>". */
  readonly args?: string;
  readonly description: string;
  readonly options?: readonly OptionSpec[];
  readonly examples?: readonly string[];
  /** The fields of the JSON `data` object, for `pilot context`. */
  readonly returns: Readonly<Record<string, string>>;
  readonly errors?: readonly ErrorCodeName[];
  run(ctx: CommandContext, args: string[], options: Record<string, any>): Promise<void> | void;
}

export interface GroupSpec {
  readonly name: string;
  readonly description: string;
}

export function fullName(spec: CommandSpec): string {
  return spec.group ? `${spec.group} ${spec.name}` : spec.name;
}
