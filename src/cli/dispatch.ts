/**
 * Parses argv with cac, one parser per level: `pilot <command>` and
 * `pilot <group> <command>` (daemon start, gateway map, ...). Maps every parse
 * failure to a usage error (exit 2) and every thrown CliError to its envelope.
 */
import { cac, type CAC } from "cac";
import { CliError, ErrorCode, usageError } from "./errors.ts";
import { createOutput, type Output } from "./output.ts";
import { fullName, type CommandContext, type CommandSpec, type GroupSpec } from "./command.ts";

export interface Program {
  readonly name: string;
  readonly version: string;
  readonly commands: readonly CommandSpec[];
  readonly groups: readonly GroupSpec[];
}

const GLOBAL_OPTIONS = [
  { flags: "--json", description: "print one JSON envelope per result (errors on stderr)" },
  { flags: "-v, --version", description: "print pilot's version" },
];

function addCommands(cli: CAC, specs: readonly CommandSpec[], ctx: () => CommandContext, pending: { run?: Promise<void> }) {
  for (const spec of specs) {
    const command = cli.command(`${spec.name}${spec.args ? " " + spec.args : ""}`, spec.description);
    for (const o of spec.options ?? []) command.option(o.flags, o.description, o.default === undefined ? undefined : { default: o.default });
    for (const e of spec.examples ?? []) command.example(e);
    command.action((...actionArgs: unknown[]) => {
      const options = actionArgs.pop() as Record<string, any>;
      const args = actionArgs.flatMap((a) => (a === undefined ? [] : Array.isArray(a) ? a.map(String) : [String(a)]));
      pending.run = Promise.resolve(spec.run(ctx(), args, options));
    });
  }
}

function buildParser(name: string, specs: readonly CommandSpec[], ctx: () => CommandContext, pending: { run?: Promise<void> }, extraHelp?: string) {
  const cli = cac(name);
  for (const o of GLOBAL_OPTIONS) cli.option(o.flags, o.description);
  cli.help((sections) => {
    // A command's own help: say what it does first, and indent its examples like the rest.
    const spec = cli.matchedCommand && specs.find((s) => s.name === cli.matchedCommand!.name);
    if (!spec) {
      // The program's help: one line on how to get a command's help instead of one line per command.
      const main = sections.map((section) =>
        section.title?.startsWith("For more info") ? { body: `Run any command with --help for its options and examples, e.g. ${name} ${specs.find((s) => s.name === "ping")?.name ?? specs[0]?.name} --help` } : section,
      );
      return extraHelp ? [...main, { title: "Groups", body: extraHelp }] : main;
    }
    return [
      { body: `${name} ${spec.name}: ${spec.description}` },
      ...sections.slice(1).map((s) =>
        s.title === "Examples"
          ? { ...s, body: s.body.split("\n").map((l) => `  ${l}`).join("\n") }
          : s.title === "Options"
            ? // cac shows "(default: true)" on every --no-X flag, which reads as if X were off by default.
              { ...s, body: s.body.split("\n").map((l) => (/^\s+--no-/.test(l) ? l.replace(/\s*\(default: true\)/, "") : l)).join("\n") }
            : s,
      ),
    ];
  });
  addCommands(cli, specs, ctx, pending);
  return cli;
}

/** Runs the program for `argv` (without the runtime and script) and returns the exit code. */
export async function dispatch(program: Program, argv: string[]): Promise<number> {
  const dashDash = argv.indexOf("--");
  const json = (dashDash < 0 ? argv : argv.slice(0, dashDash)).includes("--json");
  const out: Output = createOutput(json);
  const ctx = (): CommandContext => ({ out, programName: program.name });
  const pending: { run?: Promise<void> } = {};
  try {
    const positionals = argv.filter((a) => !a.startsWith("-"));
    const group = program.groups.find((g) => g.name === positionals[0]);
    let cli: CAC;
    let rest: string[];
    if (group) {
      const specs = program.commands.filter((c) => c.group === group.name);
      cli = buildParser(`${program.name} ${group.name}`, specs, ctx, pending);
      rest = argv.filter((a, i) => i !== argv.indexOf(group.name));
      const sub = positionals[1];
      if (sub === undefined) {
        if (!argv.includes("--help") && !argv.includes("-h")) {
          throw usageError(`"${program.name} ${group.name}" needs a subcommand: ${specs.map((s) => s.name).join(", ")}`, `run: ${program.name} ${group.name} --help`);
        }
      } else if (!specs.some((s) => s.name === sub)) {
        throw usageError(`unknown command "${group.name} ${sub}"`, `run: ${program.name} ${group.name} --help`);
      }
    } else {
      const groupHelp = program.groups.map((g) => `  ${g.name.padEnd(10)} ${g.description}  (${program.name} ${g.name} --help)`).join("\n");
      cli = buildParser(program.name, program.commands.filter((c) => !c.group), ctx, pending, groupHelp);
      rest = argv;
      const first = positionals[0];
      if (first !== undefined && !program.commands.some((c) => !c.group && c.name === first)) {
        throw usageError(`unknown command "${first}"`, `run: ${program.name} --help`);
      }
    }
    cli.parse(["", "", ...rest], { run: false });
    if (cli.options.help) return 0;
    if (!cli.matchedCommand && cli.options.version) {
      out.result({ version: program.version }, (d) => `${program.name} ${d.version}`);
      return 0;
    }
    if (!cli.matchedCommand) {
      cli.outputHelp();
      return 0;
    }
    cli.runMatchedCommand();
    await pending.run;
    return 0;
  } catch (e) {
    const error = toCliError(e);
    if (!error.silent) out.error(error);
    return error.exitCode;
  }
}

function toCliError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof Error && e.name === "CACError") return usageError(e.message.replace(/`/g, '"'), "add --help to the command to see its usage");
  const message = e instanceof Error ? e.message : String(e);
  return new CliError(ErrorCode.Internal, message, "this is a bug in pilot; please report it with the command you ran");
}

export { fullName };
