import type { CommandSpec } from "../command.ts";
import { fullName } from "../command.ts";
import { ERROR_DESCRIPTIONS } from "../errors.ts";
import { PILOT_VERSION } from "../version.ts";

/** Built lazily from the program's own declarations, so it can never drift from them. */
export function contextCommand(all: () => readonly CommandSpec[]): CommandSpec {
  return {
    name: "context",
    description: "Print a machine-readable catalogue of every command, its arguments, results and errors",
    returns: {
      version: "pilot's version",
      commands: "map of command name to {args, options, description, returns, errors}",
      error_codes: "map of error code to its meaning",
      global_flags: "flags every command accepts",
      environment: "environment variables pilot reads",
    },
    run({ out }) {
      const commands: Record<string, unknown> = {};
      for (const spec of all()) {
        commands[fullName(spec)] = {
          args: spec.args ?? "",
          options: (spec.options ?? []).map((o) => ({ flags: o.flags, description: o.description, ...(o.default !== undefined ? { default: o.default } : {}) })),
          description: spec.description,
          returns: spec.returns,
          errors: spec.errors ?? [],
        };
      }
      const data = {
        version: PILOT_VERSION,
        commands,
        error_codes: ERROR_DESCRIPTIONS,
        global_flags: { "--json": "one JSON envelope per result: {status:'ok',data} on stdout or {status:'error',code,message,hint} on stderr; exit 0 ok, 1 error, 2 usage" },
        environment: {
          PILOT_HOME: "state directory (default ~/.pilot)",
          PILOT_SOCKET: "the daemon's IPC socket path (default $PILOT_HOME/pilot.sock)",
        },
      };
      out.result(data, (d) => Object.entries(d.commands as Record<string, { description: string }>).map(([k, v]) => `${k.padEnd(18)} ${v.description}`).join("\n"));
    },
  };
}
