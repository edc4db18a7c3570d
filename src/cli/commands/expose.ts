/**
 * `pilot expose`: make a local TCP service (a Python agent, any web app)
 * reachable on a Pilot port. The daemon itself accepts the streams and
 * bridges each to the target; the rules of trust apply as to any port.
 *
 *   pilot expose 8080 --to 127.0.0.1:8000     add (kept across daemon restarts)
 *   pilot expose list                         what is exposed, with traffic counters
 *   pilot expose remove 8080                  stop (open connections are reset)
 */
import type { CommandSpec } from "../command.ts";
import { CliError, usageError } from "../errors.ts";
import type { ExposeInfo } from "../../daemon/expose.ts";
import { withDaemon } from "../daemon-client.ts";
import { badValue, portArg, textOption } from "../args.ts";
import { ago, bytes, table } from "../format.ts";


const EXAMPLE = "pilot expose 8080 --to 127.0.0.1:8000";

function rethrow(port: number, to: string | undefined) {
  return (e: any): never => {
    if (e?.code === "port_in_use") throw new CliError("port_in_use", `Pilot port ${port} is already in use on this node`, "pick another port, or stop the program that listens on it");
    if (e?.code === "already_exists") throw new CliError("already_exists", e.message, e.hint ?? `remove it first with: pilot expose remove ${port}`);
    if (e?.code === "not_found" && to === undefined) throw new CliError("not_found", `Pilot port ${port} is not exposed`, "see the exposed ports with: pilot expose list");
    throw e;
  };
}

function renderList(d: { exposes: ExposeInfo[]; total: number }): string {
  if (d.total === 0) return `no ports exposed\n  expose a local service with: ${EXAMPLE}`;
  return table(
    ["PORT", "TARGET", "STATE", "OPEN", "TOTAL", "FAILED", "IN", "OUT", "SINCE"],
    d.exposes.map((e) => [e.port, e.target + (e.allow_remote_target ? " (remote allowed)" : ""), e.active ? "active" : `inactive: ${e.error ?? "?"}`, e.connections, e.total_connections, e.failed_connections, bytes(e.bytes_in), bytes(e.bytes_out), ago(e.created_at)]),
  );
}

export const exposeCommand: CommandSpec = {
  name: "expose",
  args: "[port-or-action] [port]",
  description: "Bridge a Pilot port to a local TCP service (trusted nodes connect to the port, the daemon connects to --to); also: expose list, expose remove PORT",
  options: [
    { flags: "--to <host:port>", description: "the TCP service to bridge to: 127.0.0.1:8000, [::1]:8000, localhost:8000, or just 8000 (127.0.0.1)" },
    { flags: "--allow-remote-target", description: "allow a target that is not on this machine (by default only 127.0.0.0/8, ::1 and localhost), so that every node you trust can reach it through you" },
  ],
  examples: [
    `${EXAMPLE}    # a local agent on port 8000 answers on Pilot port 8080`,
    "pilot expose 80 --to 8000                # the same on Pilot port 80, where gateways and fetch look by default",
    "pilot expose list                        # exposed ports, open connections and traffic",
    "pilot expose remove 8080                 # stop; open connections are reset",
    "pilot expose 5432 --to db.internal:5432 --allow-remote-target    # only if every node you trust may reach it",
  ],
  returns: {
    port: "the Pilot port (add, remove)",
    target: "the TCP target HOST:PORT (add, remove)",
    allow_remote_target: "whether a non-loopback target was allowed (add, remove)",
    created_at: "ISO 8601 time the expose was made",
    active: "true while the port is bound (false if it could not be bound again at daemon start: see error)",
    connections: "bridged connections open now",
    total_connections: "connections accepted since the daemon started",
    failed_connections: "connections whose TCP connect failed (the Pilot stream was reset)",
    bytes_in: "bytes from Pilot to the target",
    bytes_out: "bytes from the target back to Pilot",
    connections_closed: "remove: open connections that were reset",
    exposes: "list: [{port, target, allow_remote_target, created_at, active, error?, connections, total_connections, failed_connections, bytes_in, bytes_out}]",
    total: "list: number of exposed ports",
  },
  errors: ["usage", "invalid_argument", "already_exists", "port_in_use", "not_found", "not_running"],
  async run({ out }, [first, second], o) {
    const to = textOption(o, "to");
    const allowRemote = o.allowRemoteTarget === true || o["allow-remote-target"] === true;
    if (first === "list") {
      if (second !== undefined || to !== undefined) throw usageError("expose list takes no port and no --to", "run: pilot expose list");
      const r = (await withDaemon((d) => d.call("expose_list"))) as { exposes: ExposeInfo[]; total: number };
      out.result(r, renderList);
      return;
    }
    if (first === "remove") {
      if (second === undefined) throw usageError("expose remove needs the Pilot port to stop exposing", "for example: pilot expose remove 8080");
      if (to !== undefined) throw usageError("expose remove takes no --to", "for example: pilot expose remove 8080");
      const port = portArg(second);
      const r = (await withDaemon((d) => d.call("expose_remove", { port }).catch(rethrow(port, undefined)))) as ExposeInfo & { connections_closed: number };
      out.result(r, (d) => `Pilot port ${d.port} is no longer exposed (it bridged to ${d.target})${d.connections_closed > 0 ? `; ${d.connections_closed} open connection${d.connections_closed === 1 ? " was" : "s were"} reset` : ""}`);
      return;
    }
    if (first === undefined) throw usageError("expose needs a Pilot port and --to HOST:PORT (or: expose list, expose remove PORT)", `for example: ${EXAMPLE}`);
    if (second !== undefined) throw usageError(`unexpected "${second}" after the port`, `for example: ${EXAMPLE}`);
    const port = portArg(first, "Pilot port");
    if (to === undefined || to === "") throw usageError("--to HOST:PORT is required: the local service to bridge to", `for example: ${EXAMPLE}`);
    // The daemon checks it too; checked here so a malformed --to is a usage mistake even with no daemon running.
    const { parseExposeTarget } = await import("../../daemon/expose.ts");
    try {
      parseExposeTarget(to);
    } catch (e) {
      const err = e as { message?: string; hint?: string };
      throw badValue(`--to ${err.message ?? `"${to}" is not HOST:PORT`}`, err.hint ?? `for example: ${EXAMPLE}`);
    }
    const r = (await withDaemon((d) => d.call("expose", { port, to, allow_remote_target: allowRemote }).catch(rethrow(port, to)))) as ExposeInfo;
    out.result(r, (d) =>
      [
        `exposed Pilot port ${d.port} -> ${d.target}${d.allow_remote_target ? " (a remote target: every node you trust can reach it through you)" : ""}`,
        "  only nodes you trust can connect (everyone, if this node is public); it is restored when the daemon restarts",
        `  try from a trusted node: pilot connect THIS-NODE ${d.port}    stop with: pilot expose remove ${d.port}`,
      ].join("\n"),
    );
  },
};
