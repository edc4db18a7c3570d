/** This node and its peers: show_self, list_peers. */
import { z } from "zod";
import type { Driver } from "../../driver/index.ts";
import { lookupPresence, PRESENCE_LOOKUPS_MAX } from "../../shared/presence.ts";
import { defineTool, iso, nullableString, num, str } from "../tool.ts";

export const showSelf = defineTool({
  name: "show_self",
  title: "Show this node",
  description:
    "This agent's own Pilot node: its address (how other agents reach it), hostname, whether it is public or private (visible only to trusted nodes), tags, and whether the registry is connected. Start here.",
  input: {},
  output: {
    node_id: z.number(),
    address: z.string().describe("this node's Pilot address, N:NNNN.HHHH.LLLL"),
    hostname: nullableString,
    public: z.boolean().describe("true: anyone may find and reach it; false: only trusted nodes"),
    tags: z.array(z.string()),
    registry: z.string(),
    registry_connected: z.boolean(),
    trusted: z.number().describe("number of trusted nodes"),
    pending: z.number().describe("trust requests waiting for an answer"),
    tunnel_peers: z.number(),
    version: nullableString,
    uptime_secs: z.number().nullable(),
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async run(_args, ctx) {
    const info = (await (await ctx.daemon()).info()) as Record<string, unknown>;
    return {
      node_id: num(info.node_id) ?? 0,
      address: String(info.address),
      hostname: str(info.hostname),
      public: info.public === true,
      tags: Array.isArray(info.tags) ? info.tags.map(String) : [],
      registry: String(info.registry ?? ""),
      registry_connected: info.registry_connected === true,
      trusted: num(info.trusted) ?? 0,
      pending: num(info.pending) ?? 0,
      tunnel_peers: num(info.peers) ?? 0,
      version: str(info.version),
      uptime_secs: num(info.uptime_secs),
    };
  },
});

/** Online state is asked of the registry per node (rate-limited there): at most PRESENCE_MAX, a few at a time. */
const PRESENCE_MAX = PRESENCE_LOOKUPS_MAX;

async function presence(d: Driver, addresses: string[]): Promise<Map<string, { online: boolean | null; last_seen: string | null }>> {
  const found = await lookupPresence((method, params) => d.call(method, params), addresses);
  return new Map([...found].map(([address, p]) => [address, { online: p.online, last_seen: iso(p.lastSeen) }]));
}

const peer = z.object({
  node_id: z.number(),
  address: z.string(),
  hostname: nullableString,
  online: z.boolean().nullable().describe("from the registry; null when unknown"),
  last_seen: nullableString.describe("ISO 8601 of its last heartbeat at the registry"),
  path: z.enum(["direct", "punched", "relay", "relay-tcp", "none"]).describe("how packets reach it: direct, punched (through NATs), relay (through the beacon), relay-tcp (through the beacon's relay over WebSocket), none (no tunnel now)"),
  rtt_ms: z.number().nullable(),
  trusted_since: nullableString,
});

export const listPeers = defineTool({
  name: "list_peers",
  title: "List trusted peers",
  description:
    "The nodes this node trusts (trust is mutual and needed to talk to a private node): each one's address, hostname, whether it is online, and the network path to it (direct, punched, relay, none) with its round-trip time.",
  input: {},
  output: {
    peers: z.array(peer),
    total: z.number(),
    other_tunnel_peers: z.number().describe("untrusted nodes with a tunnel to this one"),
    presence_limited: z.boolean().describe(`true when online state was asked for the first ${PRESENCE_MAX} peers only`),
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async run(_args, ctx) {
    const d = await ctx.daemon();
    const [trustedR, peersR] = await Promise.all([d.trusted(), d.call("peers") as Promise<{ peers: Record<string, unknown>[] }>]);
    const tunnels = new Map(peersR.peers.map((p) => [String(p.address), p]));
    const trusted = [...trustedR.trusted].sort((a, b) => Number(tunnels.has(b.address)) - Number(tunnels.has(a.address)));
    const seen = await presence(d, trusted.slice(0, PRESENCE_MAX).map((t) => t.address));
    const paths = new Set(["direct", "punched", "relay", "relay-tcp"]);
    return {
      peers: trusted.map((t) => {
        const tunnel = tunnels.get(t.address);
        const p = seen.get(t.address) ?? { online: null, last_seen: null };
        const path: "direct" | "punched" | "relay" | "relay-tcp" | "none" = tunnel && paths.has(String(tunnel.path)) ? (String(tunnel.path) as "direct" | "punched" | "relay" | "relay-tcp") : "none";
        return { node_id: t.node_id, address: t.address, hostname: str(t.hostname), online: p.online, last_seen: p.last_seen, path, rtt_ms: tunnel ? num(tunnel.rtt_ms) : null, trusted_since: iso(t.since) };
      }),
      total: trusted.length,
      other_tunnel_peers: peersR.peers.filter((p) => p.trusted !== true).length,
      presence_limited: trusted.length > PRESENCE_MAX,
    };
  },
});
