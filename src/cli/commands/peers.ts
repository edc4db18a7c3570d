/**
 * Other nodes: `find` one by name, `peers` (tunnel peers, or a registry search),
 * and this node's stream `connections`, one of which `disconnect` resets.
 */
import type { CommandSpec } from "../command.ts";
import { CliError, usageError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { targetArg, textOption } from "../args.ts";
import { ago, bytes, isoTime, ms, table } from "../format.ts";
import { TASKS_TAG } from "./tasks.ts";

/** What polo_score is. */
const POLO_SCORE_NOTE = "reputation as a worker, 0-100, from task receipts both parties signed; explain one with: pilot reputation NODE";

/** A score as the tables show it, or "-" when the registry does not show it to us. */
const polo = (score: unknown) => (typeof score === "number" ? String(score) : "-");

export const findCommand: CommandSpec = {
  name: "find",
  args: "<hostname>",
  description: "Look a node up in the registry by hostname (or address / node id): its address, visibility, tags, online state",
  examples: ["pilot find agent-b      # private nodes are visible only once they trust you", "pilot find 0:0000.0000.0005"],
  returns: {
    node_id: "the node's id",
    address: "its Pilot address",
    hostname: "its hostname, or null",
    public: "true if it is public",
    tags: "its tags (array)",
    online: "true if its daemon has been seen recently",
    last_seen: "ISO 8601 time of its last heartbeat, or null",
    public_key: "its Ed25519 public key (base64)",
    polo_score: `its polo score (${POLO_SCORE_NOTE})`,
  },
  errors: ["not_found", "invalid_argument", "not_running", "registry_unavailable"],
  async run({ out }, [text]) {
    const target = targetArg(text);
    const byName = !target.includes(":");
    const { r, self } = await withDaemon(async (d) => ({ r: (await d.call(byName ? "find" : "lookup", byName ? { hostname: target } : { target })) as Record<string, any>, self: d.address }));
    const data = {
      node_id: r.node_id,
      address: r.address,
      hostname: r.hostname || null,
      public: r.public,
      tags: r.tags ?? [],
      online: r.online,
      last_seen: isoTime(r.last_seen),
      public_key: r.public_key,
      polo_score: typeof r.polo_score === "number" ? r.polo_score : null,
    };
    out.result(data, (d) =>
      [
        `${d.hostname ?? "(no hostname)"}  ${d.address}  (node ${d.node_id})`,
        `  Visibility:  ${d.public ? "public" : d.address === self ? "private (this node)" : "private (it trusts you)"}`,
        `  Online:      ${d.online ? "yes" : "no"}${d.last_seen ? ` (last seen ${ago(d.last_seen)})` : ""}`,
        `  Tags:        ${d.tags.length ? d.tags.map((t: string) => `#${t}`).join(" ") : "-"}`,
        `  Polo score:  ${polo(d.polo_score)}  (pilot reputation ${d.hostname ?? d.address})`,
        ...(d.address === self ? [] : [`reach it with: pilot ping ${d.hostname ?? d.address}`]),
      ].join("\n"),
    );
  },
};

export const peersCommand: CommandSpec = {
  name: "peers",
  description: "List the nodes this daemon has a tunnel with; --search asks the registry for nodes by hostname or tag",
  options: [
    {
      flags: "--search <query>",
      description: `find visible nodes whose hostname contains QUERY or that have the tag QUERY; each with its polo_score (${POLO_SCORE_NOTE})`,
    },
    { flags: "--tasks", description: "only nodes that take tasks (pilot set-tasks on: the tag tasks); alone, every such node" },
  ],
  examples: ["pilot peers", "pilot peers --search nlp --tasks   # nlp nodes that take tasks", "pilot peers --search nlp      # public nodes and nodes that trust you, tagged nlp or named *nlp*", "pilot --json peers --search nlp   # as the A2A tutorial's discovery script reads it (polo_score on each)"],
  returns: {
    peers:
      "without --search: [{node_id, address, hostname, path ('direct': straight to the peer's address | 'punched': straight, through NATs on both sides opened by hole punching | 'relay': through the beacon | 'relay-tcp': through the beacon's relay over WebSocket, UDP not working here), endpoint (where the UDP datagrams go: the peer, or the beacon when relayed), rtt_ms (round trip of the last path probe, or null), path_changes, datagram_size (the largest tunnel datagram the path carries now: 1360 until path MTU discovery proves more on a direct path), pmtu (the discovery's state: disabled | base | searching | complete | error), established, encrypted, authenticated, trusted, bytes_sent, bytes_recv, handshakes, polo_score (null when the registry does not show the peer to you, or does not answer)}]; with --search: [{node_id, address, hostname, tags, public, online, polo_score (its reputation, a number: " +
      POLO_SCORE_NOTE +
      ")}]",
    total: "number of peers listed",
    query: "the search query (with --search only)",
  },
  errors: ["invalid_argument", "not_running", "registry_unavailable"],
  async run({ out }, _args, o) {
    if (o.search === true || o.search === "") throw usageError("--search needs a query", "for example: pilot peers --search nlp");
    const search = o.search === undefined ? (o.tasks ? TASKS_TAG : undefined) : textOption(o, "search"); // as typed: "007" stays "007"
    const r = (await withDaemon((d) => d.call("peers", search ? { search } : {}))) as { peers: any[]; total: number; query?: string };
    if (search && o.tasks) r.peers = r.peers.filter((p) => Array.isArray(p.tags) && p.tags.includes(TASKS_TAG));
    if (search && o.tasks) r.total = r.peers.length;
    if (search) {
      const data = {
        query: search,
        peers: r.peers.map((p) => ({
          node_id: p.node_id,
          address: p.address,
          hostname: p.hostname || null,
          tags: p.tags ?? [],
          public: p.public,
          online: p.online,
          polo_score: typeof p.polo_score === "number" ? p.polo_score : null,
        })),
        total: r.total,
      };
      out.result(data, (d) =>
        d.total === 0
          ? `no visible node matches "${search}" (private nodes show up only once they trust you)`
          : table(
              ["NODE", "ADDRESS", "HOSTNAME", "TAGS", "VISIBILITY", "ONLINE", "POLO"],
              d.peers.map((p: any) => [p.node_id, p.address, p.hostname, p.tags.map((t: string) => `#${t}`).join(" "), p.public ? "public" : "private", p.online ? "yes" : "no", polo(p.polo_score)]),
            ) + `\npolo: ${POLO_SCORE_NOTE}`,
      );
      return;
    }
    out.result({ peers: r.peers, total: r.total }, (d) =>
      d.total === 0
        ? "no tunnel peers yet: a tunnel opens when you ping or connect to a node (pilot ping NODE)"
        : table(
            ["NODE", "ADDRESS", "HOSTNAME", "PATH", "ENDPOINT", "RTT", "SESSION", "SECURITY", "TRUSTED", "SENT", "RECEIVED", "POLO"],
            d.peers.map((p: any) => [
              p.node_id,
              p.address,
              p.hostname,
              p.path,
              p.endpoint,
              p.rtt_ms == null ? "-" : ms(p.rtt_ms),
              p.established ? "up" : "idle",
              p.encrypted && p.authenticated ? "encrypted+authenticated" : p.encrypted ? "encrypted" : "none",
              p.trusted ? "yes" : "no",
              bytes(p.bytes_sent),
              bytes(p.bytes_recv),
              polo(p.polo_score),
            ]),
          ),
    );
  },
};

export const connectionsCommand: CommandSpec = {
  name: "connections",
  description: "List this node's open stream connections with their transport state (RTT, window, retransmits)",
  examples: ["pilot connections", "pilot connections --json   # then: pilot disconnect ID"],
  returns: {
    connections:
      "[{id, local_port, remote_addr, remote_port, state, origin ('dialed'|'accepted'), srtt_ms, rttvar_ms, cwnd, in_flight, send_window, recv_window, bytes_sent, bytes_recv, retransmits, fast_retransmits, timeouts}]",
    total: "number of connections",
  },
  errors: ["not_running"],
  async run({ out }) {
    const r = await withDaemon((d) => d.call("connections"));
    out.result(r, (d) =>
      d.total === 0
        ? "no open connections"
        : table(
            ["ID", "LOCAL", "REMOTE", "RPORT", "STATE", "ORIGIN", "SRTT", "CWND", "SENT", "RECEIVED", "RETX"],
            d.connections.map((c: any) => [c.id, c.local_port, c.remote_addr, c.remote_port, c.state, c.origin, ms(c.srtt_ms), c.cwnd, bytes(c.bytes_sent), bytes(c.bytes_recv), c.retransmits]),
          ) + "\nreset one with: pilot disconnect ID",
    );
  },
};

export const disconnectCommand: CommandSpec = {
  name: "disconnect",
  args: "<id>",
  description: "Reset one stream connection by its id (from pilot connections)",
  examples: ["pilot disconnect 3"],
  returns: { id: "the connection's id", closed: "true" },
  errors: ["not_found", "invalid_argument", "not_running"],
  async run({ out }, [text]) {
    const id = /^[0-9]{1,10}$/.test(text ?? "") ? Number(text) : NaN;
    if (!Number.isSafeInteger(id)) throw new CliError("invalid_argument", `"${text}" is not a connection id`, "list connections and their ids with: pilot connections");
    const r = await withDaemon((d) => d.call("disconnect", { id }));
    out.result(r, `connection ${id} reset`);
  },
};
