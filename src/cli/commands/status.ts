/**
 * `pilot status`: the whole picture on one screen, like `tailscale status`.
 * This node (address, name, visibility, registry and beacon, and its path to
 * the internet as far as the beacon tells), every trusted peer (online state
 * from the registry, path and RTT from the tunnel, traffic), and the trust
 * requests waiting for an answer. It composes the daemon's existing calls
 * (info, peers, trusted, pending, lookup); nothing here is new daemon state.
 */
import { networkInterfaces } from "node:os";
import type { CommandSpec } from "../command.ts";
import type { Driver } from "../../driver/index.ts";
import { withDaemon } from "../daemon-client.ts";
import { ago, bytes, duration, isoTime, ms, table } from "../format.ts";
import { lookupPresence, PRESENCE_LOOKUPS_MAX } from "../../shared/presence.ts";

/**
 * Online state is asked of the registry one node at a time, and the registry
 * allows a node about 10 requests a second (burst 50), which the daemon's own
 * heartbeats share: status asks for at most this many peers (those with a
 * tunnel first) and shows the rest as unknown.
 */
export { PRESENCE_LOOKUPS_MAX };

/** How this node reaches the internet, as far as the beacon's view of it tells. */
export type InternetPath = "public" | "cone" | "nat" | "unknown";

/**
 * public: the beacon sees one of this host's own addresses and its tunnel
 * port (no NAT in between). cone: behind a NAT, and a hole-punched path
 * works, so the NAT keeps one mapping for all destinations. nat: behind a NAT
 * whose type is not known yet (no punched path; a symmetric NAT looks the
 * same as a cone NAT whose peers have not been punched to). unknown: the
 * beacon has not told us our public address (beacon off or silent).
 */
export function internetPathOf(observed: string | null | undefined, tunnelPort: number | null, localIps: ReadonlySet<string>, peerPaths: readonly string[]): { path: InternetPath; detail: string } {
  if (!observed) return { path: "unknown", detail: "the beacon has not reported this node's public address (beacon off or not answering)" };
  const colon = observed.lastIndexOf(":");
  const ip = observed.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = Number(observed.slice(colon + 1));
  if (localIps.has(ip) && port === tunnelPort) return { path: "public", detail: `the beacon sees this host's own address ${observed}` };
  if (peerPaths.includes("punched")) return { path: "cone", detail: `seen as ${observed}; hole punching works, so the NAT keeps one mapping for all destinations` };
  return { path: "nat", detail: `seen as ${observed}; the NAT's type is not known until a hole punch succeeds (peers behind NATs may be relayed)` };
}

function localIps(): Set<string> {
  const ips = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) ips.add(a.address);
  return ips;
}

function portOf(endpoint: unknown): number | null {
  if (typeof endpoint !== "string") return null;
  const n = Number(endpoint.slice(endpoint.lastIndexOf(":") + 1));
  return Number.isInteger(n) ? n : null;
}

interface Presence {
  online: boolean | null;
  last_seen: string | null;
}

/** The registry's online state of `addresses`; null where it did not answer in time. */
async function presenceOf(d: Driver, addresses: string[]): Promise<Map<string, Presence>> {
  const found = await lookupPresence((method, params) => d.call(method, params), addresses);
  return new Map([...found].map(([address, p]) => [address, { online: p.online, last_seen: isoTime(p.lastSeen) }]));
}

export const statusCommand: CommandSpec = {
  name: "status",
  description: "Show this node, every trusted peer (online, path, RTT, last seen, traffic) and pending trust requests on one screen",
  examples: ["pilot status", "pilot --json status   # the same, for scripts: .data.node, .data.peers, .data.pending"],
  returns: {
    node:
      "this node: {node_id, address, hostname, public, tags, endpoint (tunnel UDP address), observed_endpoint (as the beacon sees it, or null), registry, registry_connected, beacon_registered, relay_tcp ({url, connected, in_use}: the relay over WebSocket, or null without --relay-ws), internet ('public': no NAT | 'cone': behind a NAT that hole punching gets through | 'nat': behind a NAT of unknown type | 'unknown': no word from the beacon), internet_detail, pid, uptime_secs}",
    peers:
      "trusted peers: [{node_id, address, hostname, online (from the registry: true | false | null when unknown), last_seen (ISO 8601 of its last heartbeat at the registry, or null), path ('direct' | 'punched' | 'relay' | 'relay-tcp': the relay over WebSocket | 'none': no tunnel), endpoint, rtt_ms (or null), session ('up' | 'idle' | null), bytes_sent, bytes_recv}]",
    pending: "trust requests waiting for your answer: [{node_id, address, hostname, reason, received_at (ISO 8601)}]",
    outgoing: "your unanswered trust requests: [{node_id, address, reason, sent_at}]",
    other_tunnel_peers: "tunnel peers that are not trusted (strangers talking to a public node)",
    presence_limited: `true when online state was asked for only the first ${PRESENCE_LOOKUPS_MAX} peers`,
  },
  errors: ["not_running"],
  async run({ out }) {
    const data = await withDaemon(async (d) => {
      const [info, peersR, trustedR, pendingR] = (await Promise.all([d.info(), d.call("peers"), d.call("trusted"), d.call("pending")])) as [Record<string, any>, { peers: any[] }, { trusted: any[] }, { pending: any[]; outgoing: any[] }];
      const tunnels = new Map<string, any>(peersR.peers.map((p) => [p.address, p]));
      // Peers with a tunnel first (their online state matters most), then by name.
      const trusted = [...trustedR.trusted].sort((a, b) => Number(tunnels.has(b.address)) - Number(tunnels.has(a.address)) || String(a.hostname ?? a.address).localeCompare(String(b.hostname ?? b.address)));
      const asked = info.registry_connected ? trusted.slice(0, PRESENCE_LOOKUPS_MAX).map((t) => t.address as string) : [];
      const presence = await presenceOf(d, asked);
      const { path: internet, detail } = internetPathOf(info.observed_endpoint, portOf(info.endpoint), localIps(), peersR.peers.map((p) => p.path));
      return {
        node: {
          node_id: info.node_id,
          address: info.address,
          hostname: info.hostname ?? null,
          public: info.public,
          tags: info.tags ?? [],
          endpoint: info.endpoint,
          observed_endpoint: info.observed_endpoint ?? null,
          registry: info.registry,
          registry_connected: info.registry_connected,
          beacon_registered: info.beacon_registered ?? false,
          relay_tcp: info.relay_tcp ?? null,
          internet,
          internet_detail: detail,
          pid: info.pid,
          uptime_secs: info.uptime_secs,
        },
        peers: trusted.map((t) => {
          const tunnel = tunnels.get(t.address);
          const p = presence.get(t.address) ?? { online: null, last_seen: null };
          return {
            node_id: t.node_id,
            address: t.address,
            hostname: t.hostname || null,
            online: p.online,
            last_seen: p.last_seen,
            path: tunnel ? tunnel.path : "none",
            endpoint: tunnel?.endpoint ?? null,
            rtt_ms: tunnel?.rtt_ms ?? null,
            session: tunnel ? (tunnel.established ? "up" : "idle") : null,
            bytes_sent: tunnel?.bytes_sent ?? 0,
            bytes_recv: tunnel?.bytes_recv ?? 0,
          };
        }),
        pending: pendingR.pending.map((p) => ({ node_id: p.node_id, address: p.address, hostname: p.hostname || null, reason: p.reason ?? "", received_at: isoTime(p.received_at) })),
        outgoing: pendingR.outgoing.map((p) => ({ node_id: p.node_id, address: p.address, reason: p.reason ?? "", sent_at: isoTime(p.sent_at) })),
        other_tunnel_peers: peersR.peers.filter((p) => !p.trusted).length,
        presence_limited: info.registry_connected && trusted.length > PRESENCE_LOOKUPS_MAX,
      };
    });
    out.result(data, renderStatus);
  },
};

const INTERNET_WORDS: Record<InternetPath, string> = { public: "public (no NAT)", cone: "behind a cone NAT", nat: "behind a NAT", unknown: "unknown" };

function renderStatus(d: any): string {
  const n = d.node;
  const lines = [
    `${n.hostname ?? "(no hostname)"}  ${n.address}  ${n.public ? "public" : "private"}  (node ${n.node_id}, pid ${n.pid}, up ${duration(n.uptime_secs)})`,
    `  Registry:  ${n.registry} ${n.registry_connected ? "connected" : "unreachable (retrying; online states unknown)"}`,
    `  Beacon:    ${n.beacon_registered ? "registered" : "not registered (off, or not answering)"}${n.observed_endpoint ? `, sees this node at ${n.observed_endpoint}` : ""}`,
    ...(n.relay_tcp ? [`  Relay-TCP: ${n.relay_tcp.url} ${n.relay_tcp.in_use ? "in use (UDP does not work here; peers are reached over it)" : n.relay_tcp.connected ? "connected (UDP works again; closing soon)" : "standby (used only if UDP stops working)"}`] : []),
    `  Internet:  ${INTERNET_WORDS[n.internet as InternetPath]}: ${n.internet_detail}`,
    `  Tunnel:    udp ${n.endpoint}`,
    "",
  ];
  if (d.peers.length === 0) lines.push("No trusted peers yet: ask one with: pilot handshake NODE \"why\"");
  else {
    const online = (p: any) => (p.online === true ? "online" : p.online === false ? "offline" : "unknown");
    lines.push(
      table(
        ["PEER", "ADDRESS", "STATUS", "PATH", "RTT", "LAST SEEN", "SENT", "RECEIVED"],
        d.peers.map((p: any) => [p.hostname ?? `node ${p.node_id}`, p.address, online(p), p.path, p.rtt_ms == null ? "-" : ms(p.rtt_ms), p.last_seen ? ago(p.last_seen) : "-", p.session ? bytes(p.bytes_sent) : "-", p.session ? bytes(p.bytes_recv) : "-"]),
      ),
    );
    if (d.presence_limited) lines.push(`(online state asked for the first ${PRESENCE_LOOKUPS_MAX} peers only; pilot find NAME asks for one)`);
  }
  if (d.other_tunnel_peers > 0) lines.push(`${d.other_tunnel_peers} untrusted tunnel peer${d.other_tunnel_peers === 1 ? "" : "s"} (see pilot peers)`);
  if (d.pending.length > 0) {
    lines.push("", `${d.pending.length} trust request${d.pending.length === 1 ? "" : "s"} waiting for you:`);
    lines.push(table(["NODE", "ADDRESS", "HOSTNAME", "RECEIVED", "REASON"], d.pending.map((p: any) => [p.node_id, p.address, p.hostname, ago(p.received_at), p.reason]), "  "));
    lines.push(`approve with: pilot approve ${d.pending[0].node_id}    reject with: pilot reject ${d.pending[0].node_id} "reason"`);
  }
  if (d.outgoing.length > 0) lines.push("", `waiting for ${d.outgoing.length} node${d.outgoing.length === 1 ? "" : "s"} to approve your request: ${d.outgoing.map((p: any) => p.address).join(", ")}`);
  return lines.join("\n");
}
