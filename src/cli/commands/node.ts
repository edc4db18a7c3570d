/**
 * This node: `info`, its name (`set-hostname`, `clear-hostname`), its tags
 * (`set-tags`, `clear-tags`) and its visibility (`set-public`, `set-private`).
 * Each asks the local daemon, which tells the registry.
 */
import type { CommandSpec } from "../command.ts";
import { CliError, usageError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { bytes, duration } from "../format.ts";

const DAEMON_ERRORS = ["not_running", "registry_unavailable"] as const;

export const infoCommand: CommandSpec = {
  name: "info",
  description: "Show this node: address, hostname, visibility, tags, tunnel endpoint, peers and traffic",
  examples: ["pilot info", "pilot info --json   # e.g. read .data.address in a script"],
  returns: {
    node_id: "this node's id (number)",
    address: "this node's Pilot address, N:NNNN.HHHH.LLLL",
    hostname: "claimed hostname, or null",
    public: "true if anyone may find and reach this node; false: only trusted nodes",
    tags: "this node's tags (array of strings)",
    version: "the daemon's version",
    pid: "the daemon's process id",
    uptime_secs: "seconds since the daemon started",
    endpoint: "the UDP address the tunnel listens on",
    observed_endpoint: "the public ip:port the beacon saw, or null",
    registry: "the registry's HOST:PORT",
    registry_connected: "true while the registry session is up",
    encrypt: "always true: every tunnel is X25519 + AES-256-GCM",
    peers: "number of tunnel peers",
    connections: "number of open stream connections",
    ports: "virtual ports with a stream listener (array)",
    trusted: "number of trusted nodes",
    pending: "number of trust requests waiting for your answer",
    bytes_sent: "tunnel bytes sent",
    bytes_recv: "tunnel bytes received",
    packets: "data-plane packet counters (object)",
  },
  errors: ["not_running"],
  async run({ out }) {
    const info = await withDaemon((d) => d.info());
    out.result(info, renderInfo);
  },
};

function renderInfo(d: any): string {
  const lines = [
    `${d.hostname ?? "(no hostname)"}  ${d.address}  (node ${d.node_id})`,
    `  Visibility:   ${d.public ? "public: anyone can find and reach this node" : "private: only trusted nodes can find or reach this node"}`,
    `  Tags:         ${d.tags?.length ? d.tags.map((t: string) => `#${t}`).join(" ") : "-"}`,
    `  Tunnel:       udp ${d.endpoint}${d.observed_endpoint && d.observed_endpoint !== d.endpoint ? ` (seen as ${d.observed_endpoint})` : ""}, X25519 + AES-256-GCM`,
    `  Registry:     ${d.registry} (${d.registry_connected ? "connected" : "unreachable, retrying"})`,
    `  Daemon:       pid ${d.pid}, up ${duration(d.uptime_secs)}, version ${d.version}`,
    `  Peers:        ${d.peers}    Connections: ${d.connections}    Ports: ${d.ports?.length ? d.ports.join(", ") : "-"}`,
    `  Trust:        ${d.trusted} trusted, ${d.pending} waiting for you`,
    `  Traffic:      ${bytes(d.bytes_sent)} sent, ${bytes(d.bytes_recv)} received`,
  ];
  if (d.pending > 0) lines.push("", `${d.pending} trust request${d.pending === 1 ? "" : "s"} waiting: see ${d.pending === 1 ? "it" : "them"} with: pilot pending`);
  if (!d.hostname) lines.push("", "Claim a name others can use: pilot set-hostname NAME");
  return lines.join("\n");
}

export const setHostnameCommand: CommandSpec = {
  name: "set-hostname",
  args: "<name>",
  description: "Claim a hostname for this node (unique in the registry; replaces the current one)",
  examples: ["pilot set-hostname agent-a    # others can now: pilot ping agent-a (once they may see you)"],
  returns: { node_id: "this node's id", hostname: "the hostname now claimed" },
  errors: ["already_exists", "invalid_argument", ...DAEMON_ERRORS],
  async run({ out }, [name]) {
    if (!name) throw usageError("a hostname is required", "for example: pilot set-hostname agent-a");
    const r = (await withDaemon((d) => d.call("set_hostname", { hostname: name }).catch(hostnameTaken(name)))) as { node_id: number; hostname: string };
    out.result(r, (d) => `hostname set: ${d.hostname}\n  trusted nodes (or anyone, if this node is public) can now use: pilot ping ${d.hostname}`);
  },
};

function hostnameTaken(name: string) {
  return (e: any) => {
    if (e?.code === "already_exists") throw new CliError("already_exists", `the hostname "${name}" belongs to another node`, "choose another name");
    throw e;
  };
}

export const clearHostnameCommand: CommandSpec = {
  name: "clear-hostname",
  description: "Release this node's hostname (others can then claim it)",
  examples: ["pilot clear-hostname"],
  returns: { node_id: "this node's id", hostname: "null" },
  errors: [...DAEMON_ERRORS],
  async run({ out }) {
    const r = (await withDaemon((d) => d.call("set_hostname", { hostname: "" }))) as { node_id: number; hostname: string | null };
    out.result({ node_id: r.node_id, hostname: r.hostname || null }, "hostname cleared: this node is known only by its address now");
  },
};

function visibilityCommand(isPublic: boolean): CommandSpec {
  return {
    name: isPublic ? "set-public" : "set-private",
    description: isPublic
      ? "Make this node public: anyone can find it (find, peers --search) and connect to it"
      : "Make this node private (the default): only nodes you trust can find or reach it",
    examples: [isPublic ? "pilot set-public     # e.g. for a service every agent may call" : "pilot set-private    # strangers can no longer find, ping or connect to you"],
    returns: { node_id: "this node's id", public: `${isPublic}`, visibility: `"${isPublic ? "public" : "private"}"` },
    errors: [...DAEMON_ERRORS],
    async run({ out }) {
      const r = await withDaemon((d) => d.call("set_visibility", { public: isPublic }));
      out.result(
        r,
        isPublic
          ? "this node is now public: anyone can find it and connect to it\n  make it private again with: pilot set-private"
          : "this node is now private: only trusted nodes can find or reach it\n  let a node in with: pilot approve NODE (after it runs pilot handshake)",
      );
    },
  };
}

export const setPublicCommand = visibilityCommand(true);
export const setPrivateCommand = visibilityCommand(false);

export const setTagsCommand: CommandSpec = {
  name: "set-tags",
  args: "<...tags>",
  description: "Replace this node's tags (up to 10; lowercase letters, digits, hyphens; a leading # is dropped)",
  examples: ["pilot set-tags nlp summarizer    # others find you with: pilot peers --search nlp"],
  returns: { node_id: "this node's id", tags: "the tags now set (array)" },
  errors: ["invalid_argument", ...DAEMON_ERRORS],
  async run({ out }, tags) {
    if (tags.length === 0) throw usageError("at least one tag is required", "for example: pilot set-tags nlp summarizer (clear them with: pilot clear-tags)");
    const r = await withDaemon((d) => d.call("set_tags", { tags }));
    out.result(r, (d) => `tags set: ${d.tags.map((t: string) => `#${t}`).join(" ")}`);
  },
};

export const clearTagsCommand: CommandSpec = {
  name: "clear-tags",
  description: "Remove all of this node's tags",
  examples: ["pilot clear-tags"],
  returns: { node_id: "this node's id", tags: "[] (empty array)" },
  errors: [...DAEMON_ERRORS],
  async run({ out }) {
    const r = await withDaemon((d) => d.call("set_tags", { tags: [] }));
    out.result(r, "tags cleared");
  },
};
