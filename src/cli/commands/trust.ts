/**
 * Mutual trust: `handshake` asks a node, `pending` shows who asked you,
 * `approve` / `reject` answer, `trust` lists who you trust, `untrust` ends it
 * (open connections are reset on both sides at once). Two nodes that both
 * ask each other are trusted without an approve.
 */
import type { CommandSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { countOption, sizeOption, targetArg, textOption } from "../args.ts";
import { ago, isoTime, named, nodeIdOf, table } from "../format.ts";

const TRUST_ERRORS = ["invalid_argument", "not_running", "registry_unavailable", "rate_limited"] as const;

interface TrustResult {
  node_id: number;
  address: string;
  status: string;
}

/** Replaces the hint of a `code` failure (the daemon's generic one does not fit this command). */
function rehint(code: string, message: ((e: any) => string) | null, hint: string) {
  return (e: any): never => {
    if (e?.code === code) throw new CliError(code as any, message ? message(e) : e.message, hint);
    throw e;
  };
}

export const handshakeCommand: CommandSpec = {
  name: "handshake",
  args: "<target> [reason]",
  description: "Ask a node for mutual trust; it stays pending until the node approves (or asks you too)",
  examples: [
    'pilot handshake 42 "summarizer for the research team"   # private nodes: use their node id or address',
    "pilot handshake agent-b                                 # public nodes (or nodes that asked you): a hostname works",
  ],
  returns: { node_id: "the node asked", address: "its address", status: "'pending' (waiting for its approval) or 'trusted' (it had asked you too, or already trusted you)" },
  errors: ["not_found", ...TRUST_ERRORS],
  async run({ out }, [text, reason]) {
    const target = targetArg(text);
    const { r, self } = await withDaemon(async (d) => {
      const r = (await d.call("handshake", { target, reason: reason ?? "" }).catch(
        rehint("not_found", null, `a private node is found by name only once it trusts you: ask by its node id or address instead, e.g. pilot handshake 42 "why"`),
      )) as TrustResult;
      return { r, self: d.hostname ?? String(nodeIdOf(d.address)) };
    });
    out.result(r, (d) =>
      d.status === "trusted"
        ? `you and ${named(text!, d.node_id, d.address)} trust each other now\n  try: pilot ping ${text}`
        : `trust request sent to ${named(text!, d.node_id, d.address)}\n  it is waiting for the other side: on that node, run: pilot approve ${self}\n  check progress with: pilot trust`,
    );
  },
};

interface PendingItem {
  node_id: number;
  address: string;
  hostname: string | null;
  reason: string;
  received_at: number;
}

/** Most requests `pilot pending --all` lists (the registry keeps at most 1000 pending per node). */
const PENDING_ALL_MAX = 10_000;

export const pendingCommand: CommandSpec = {
  name: "pending",
  description: "List the trust requests waiting for your answer (and the ones you sent that are still unanswered)",
  options: [
    { flags: "--limit <n>", description: "list this many requests, newest first (pages through every pending request)" },
    { flags: "--offset <n>", description: "with --limit: skip this many of the newest first" },
    { flags: "--all", description: "list every pending request, newest first" },
  ],
  examples: [
    "pilot pending     # then: pilot approve NODE, or pilot reject NODE \"reason\"",
    "pilot pending --limit 20 --offset 20    # the 21st to 40th newest",
    "pilot pending --all --json",
  ],
  returns: {
    pending: "requests to you: [{node_id, address, hostname, reason, received_at (ISO 8601)}]. Without options: all of them up to 100, else the oldest 50 and the newest 50, oldest first; with --limit/--offset/--all: newest first",
    outgoing: "your unanswered requests: [{node_id, address, reason, sent_at (ISO 8601)}]",
    total: "number of requests waiting for you (all of them, listed or not)",
    offset: "with --limit/--offset/--all: where the list starts (0: the newest)",
  },
  errors: ["not_running", "invalid_argument", "registry_unavailable"],
  async run({ out }, _args, o) {
    const paged = o.limit !== undefined || o.offset !== undefined || o.all === true;
    if (o.all === true && (o.limit !== undefined || o.offset !== undefined)) throw new CliError("invalid_argument", "--all lists everything: use it without --limit and --offset");
    const offset = o.offset === undefined ? 0 : (sizeOption(textOption(o, "offset"), "--offset", PENDING_ALL_MAX) ?? 0);
    const limit = o.all === true ? PENDING_ALL_MAX : o.limit === undefined ? 20 : countOption(textOption(o, "limit"), "--limit", PENDING_ALL_MAX)!;
    const r = await withDaemon(async (d) => {
      if (!paged) return (await d.call("pending")) as { pending: PendingItem[]; outgoing: any[]; total: number };
      // Pages of at most 100 (each fits one daemon answer), newest first, until `limit` or the end.
      const pending: PendingItem[] = [];
      let at: number | null = offset;
      let total = 0;
      let outgoing: any[] = [];
      while (at !== null && pending.length < limit) {
        const page = (await d.call("pending", { offset: at, limit: Math.min(100, limit - pending.length) })) as { pending: PendingItem[]; outgoing: any[]; total: number; next_offset: number | null };
        pending.push(...page.pending);
        total = page.total;
        outgoing = page.outgoing;
        at = page.pending.length > 0 ? page.next_offset : null;
      }
      return { pending, outgoing, total, offset };
    });
    const data: Record<string, unknown> = {
      pending: r.pending.map((p) => ({ node_id: p.node_id, address: p.address, hostname: p.hostname || null, reason: p.reason ?? "", received_at: isoTime(p.received_at) })),
      outgoing: r.outgoing.map((p) => ({ node_id: p.node_id, address: p.address, reason: p.reason ?? "", sent_at: isoTime(p.sent_at) })),
      total: r.total,
    };
    if (paged) data.offset = offset;
    out.result(data, (d) => {
      const lines: string[] = [];
      const listed = d.pending.length;
      if (d.total === 0) lines.push("no trust requests waiting for you");
      else if (listed === 0) lines.push(`${d.total} trust request${d.total === 1 ? "" : "s"} waiting for you; none from offset ${offset}`);
      else {
        const which = paged ? `, newest first${offset > 0 ? ` from the ${offset + 1}th newest` : ""}` : listed < d.total ? ": the oldest and the newest" : "";
        lines.push(`${d.total} trust request${d.total === 1 ? "" : "s"} waiting for you${listed < d.total ? ` (${listed} listed${which})` : which}:`);
        lines.push(table(["NODE", "ADDRESS", "HOSTNAME", "RECEIVED", "REASON"], d.pending.map((p: any) => [p.node_id, p.address, p.hostname, ago(p.received_at), p.reason]), "  "));
        const first = d.pending[0];
        lines.push(`approve with: pilot approve ${first.node_id}    reject with: pilot reject ${first.node_id} "reason"`);
        if (listed < d.total) {
          const rest = d.total - listed;
          lines.push(
            paged && offset + listed < d.total
              ? `${rest} more: pilot pending --offset ${offset + listed} --limit ${Math.min(limit, 100)}, or pilot pending --all`
              : `${rest} more not listed: pilot pending --all, or page with --limit N --offset M (newest first)`,
          );
        }
      }
      if (d.outgoing.length > 0) {
        lines.push("", `you asked ${d.outgoing.length} node${d.outgoing.length === 1 ? "" : "s"}; waiting for ${d.outgoing.length === 1 ? "its" : "their"} approval:`);
        lines.push(table(["NODE", "ADDRESS", "SENT", "REASON"], d.outgoing.map((p: any) => [p.node_id, p.address, ago(p.sent_at), p.reason]), "  "));
      }
      return lines.join("\n");
    });
  },
};

export const approveCommand: CommandSpec = {
  name: "approve",
  args: "<target>",
  description: "Approve a node's trust request: you then trust each other and can find and reach each other",
  examples: ["pilot approve 5", "pilot approve agent-b    # the hostname shown by pilot pending works too"],
  returns: { node_id: "the approved node", address: "its address", status: "'trusted'" },
  errors: ["not_found", ...TRUST_ERRORS],
  async run({ out }, [text]) {
    const target = targetArg(text);
    const r = (await withDaemon((d) => d.call("approve", { target }).catch(rehint("not_found", () => `no pending trust request from ${text}`, "see who is waiting with: pilot pending")))) as TrustResult;
    out.result(r, (d) => `you and ${named(text!, d.node_id, d.address)} trust each other now\n  try: pilot ping ${d.node_id}`);
  },
};

export const rejectCommand: CommandSpec = {
  name: "reject",
  args: "<target> [reason]",
  description: "Reject a node's trust request (the node is told, with your reason)",
  examples: ['pilot reject 5 "not part of this project"'],
  returns: { node_id: "the rejected node", address: "its address", status: "'rejected'" },
  errors: ["not_found", ...TRUST_ERRORS],
  async run({ out }, [text, reason]) {
    const target = targetArg(text);
    const params: Record<string, unknown> = { target };
    if (reason) params.reason = reason;
    const r = (await withDaemon((d) => d.call("reject", params).catch(rehint("not_found", () => `no pending trust request from ${text}`, "see who is waiting with: pilot pending")))) as TrustResult;
    out.result(r, (d) => `rejected the trust request from ${named(text!, d.node_id, d.address)}`);
  },
};

export const trustCommand: CommandSpec = {
  name: "trust",
  description: "List the nodes you trust (trust is always mutual)",
  examples: ["pilot trust", "pilot trust --json    # .data.trusted[].node_id"],
  returns: { trusted: "[{node_id, address, hostname, since (ISO 8601), connected (tunnel up now)}]", total: "number of trusted nodes" },
  errors: ["not_running"],
  async run({ out }) {
    const r = (await withDaemon((d) => d.call("trusted"))) as { trusted: any[]; total: number };
    const data = {
      trusted: r.trusted.map((t) => ({ node_id: t.node_id, address: t.address, hostname: t.hostname || null, since: isoTime(t.since), connected: t.connected })),
      total: r.total,
    };
    out.result(data, (d) =>
      d.total === 0
        ? 'you trust no node yet\n  ask one with: pilot handshake NODE "why"; see requests to you with: pilot pending'
        : table(["NODE", "ADDRESS", "HOSTNAME", "SINCE", "TUNNEL"], d.trusted.map((t: any) => [t.node_id, t.address, t.hostname, ago(t.since), t.connected ? "up" : "-"])) +
          "\nend trust with: pilot untrust NODE",
    );
  },
};

export const untrustCommand: CommandSpec = {
  name: "untrust",
  args: "<target>",
  description: "End trust with a node (or withdraw your request): its connections are reset at once on both sides",
  examples: ["pilot untrust 5"],
  returns: {
    node_id: "the node",
    address: "its address",
    status: "'revoked'",
    registry_confirmed: "false if the registry was unreachable: enforced here now, told to the registry when it is back",
  },
  errors: ["not_found", ...TRUST_ERRORS],
  async run({ out }, [text]) {
    const target = targetArg(text);
    const r = await withDaemon((d) => d.call("untrust", { target }));
    out.result(r, (d: any) =>
      `trust with ${named(text!, d.node_id, d.address)} ended: its connections were reset${d.registry_confirmed ? "" : "\n  the registry is unreachable: it will be told when it is back"}`,
    );
  },
};
