/**
 * A NAT lab made of network namespaces, veth pairs, one bridge and nftables,
 * built and torn down by the tests themselves. Nothing leaves the namespaces:
 * every address is TEST-NET or 192.168.x.x and exists only inside them.
 *
 *   h1 192.168.1.10 ─lan─ nat1 [wan 203.0.113.11] ─┐
 *                                                  ├─ br0 203.0.113.1/24 ─ (inet, routes) ─ 198.51.100.1 ── rdv 198.51.100.10
 *   h2 192.168.2.10 ─lan─ nat2 [wan 203.0.113.12] ─┤                                                         (registry + beacon)
 *                            pub 203.0.113.20 ─────┘
 *
 * NAT types per router (nft table `ip pilotnat`):
 *   cone       masquerade: Linux keeps the source port when it is free, so the
 *              mapping is endpoint-independent; filtering comes from conntrack
 *              (address and port dependent): a port-restricted cone.
 *   symmetric  masquerade random,fully-random: a new random public port for
 *              every destination (endpoint-dependent mapping).
 *   none       routing only: the LAN host is reachable at its own address.
 * Every router drops unsolicited packets arriving on its WAN (a home router's
 * firewall), so a direct path into a LAN needs punching.
 *
 * Knobs: setNat (flushes conntrack), setFirewall (a corporate firewall on the
 * router's forward path: drop all UDP, or pass only TCP to one address:port), setLoss (nft numgen drop in forward,
 * both directions), setUdpTimeout (the router's conntrack UDP timeouts),
 * flushConntrack, remapPort (the NAT moves a host's mapping to a new public
 * port: a rebinding), conntrack (the table, for evidence).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export type NatType = "cone" | "symmetric" | "none";
export type Router = "nat1" | "nat2";
export type Host = "inet" | "rdv" | "nat1" | "nat2" | "h1" | "h2" | "pub";

export const ADDRESSES = {
  rdv: "198.51.100.10",
  pub: "203.0.113.20",
  h1: "192.168.1.10",
  h2: "192.168.2.10",
  nat1: "203.0.113.11",
  nat2: "203.0.113.12",
} as const;

/** IPv6 (ULA) addresses for `enableIpv6`: routed through the routers, never translated. */
export const ADDRESSES_V6 = {
  inet: "fd00:203::1",
  nat1: "fd00:203::11",
  nat2: "fd00:203::12",
  h1: "fd00:1::10",
  h2: "fd00:2::10",
} as const;

const HOSTS: Host[] = ["inet", "rdv", "nat1", "nat2", "h1", "h2", "pub"];
const ROUTER_LAN: Record<Router, { host: "h1" | "h2"; lan: string; net: string }> = {
  nat1: { host: "h1", lan: "192.168.1.1", net: "192.168.1.0/24" },
  nat2: { host: "h2", lan: "192.168.2.1", net: "192.168.2.0/24" },
};

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], input?: string): RunResult {
  const p = Bun.spawnSync(args, { stdin: input !== undefined ? new TextEncoder().encode(input) : "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function must(args: string[], input?: string): string {
  const r = run(args, input);
  if (r.code !== 0) throw new Error(`${args.join(" ")} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":").concat(["/usr/sbin", "/sbin"])) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return null;
}

/** Why the lab cannot run here, or null if it can (root, ip, nft, network namespaces). */
export function labUnavailable(): string | null {
  if (process.platform !== "linux") return "not Linux";
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "not running as root";
  if (!which("ip")) return "iproute2 (ip) is not installed";
  if (!which("nft")) return "nftables (nft) is not installed";
  const probe = `pl${process.pid}-probe`;
  const r = run(["ip", "netns", "add", probe]);
  if (r.code !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  const nft = run(["ip", "netns", "exec", probe, "nft", "add", "table", "ip", "probe"]);
  run(["ip", "netns", "del", probe]);
  if (nft.code !== 0) return `nftables does not work in a namespace: ${nft.stderr.trim()}`;
  return null;
}

/** Deletes namespaces left by an earlier lab whose process is gone (a crashed run). */
function removeStale(): void {
  const list = run(["ip", "netns", "list"]).stdout;
  for (const line of list.split("\n")) {
    const m = /^(pl(\d+)-[a-z0-9]+)/.exec(line.trim());
    if (!m) continue;
    const pid = Number(m[2]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch {
        alive = false;
      }
    }
    if (!alive) run(["ip", "netns", "del", m[1]!]);
  }
}

export class NatLab {
  readonly prefix = `pl${process.pid}`;
  private readonly nat: Record<Router, NatType> = { nat1: "cone", nat2: "cone" };
  private readonly remaps: Record<Router, string[]> = { nat1: [], nat2: [] };
  private destroyed = false;

  private constructor() {}

  /** Builds the whole topology; on any failure it is torn down again before the error is thrown. */
  static create(types: { nat1?: NatType; nat2?: NatType } = {}): NatLab {
    removeStale();
    const lab = new NatLab();
    // If the test process dies without tearing the lab down, its namespaces go with it.
    process.once("exit", () => lab.destroy());
    try {
      lab.build();
      lab.setNat("nat1", types.nat1 ?? "cone");
      lab.setNat("nat2", types.nat2 ?? "cone");
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  ns(host: Host): string {
    return `${this.prefix}-${host}`;
  }

  /** Runs a command inside a host's namespace. */
  exec(host: Host, args: string[], input?: string): RunResult {
    return run(["ip", "netns", "exec", this.ns(host), ...args], input);
  }

  /** The argv prefix that runs a command inside a host's namespace (for long-running processes). */
  wrap(host: Host, args: string[]): string[] {
    return ["ip", "netns", "exec", this.ns(host), ...args];
  }

  private ip(host: Host, args: string[]): void {
    must(["ip", "-n", this.ns(host), ...args]);
  }

  private sysctl(host: Host, key: string, value: string | number): void {
    const path = `/proc/sys/${key.replaceAll(".", "/")}`;
    const r = this.exec(host, ["sh", "-c", `echo ${value} > ${path}`]);
    if (r.code !== 0) throw new Error(`sysctl ${key}=${value} in ${host}: ${r.stderr.trim()}`);
  }

  private veth(a: Host, aName: string, b: Host, bName: string): void {
    must(["ip", "-n", this.ns(a), "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", this.ns(b)]);
  }

  private build(): void {
    for (const h of HOSTS) {
      must(["ip", "netns", "add", this.ns(h)]);
      this.ip(h, ["link", "set", "lo", "up"]);
    }
    // The "internet": a bridge for the WAN segment, a routed link to the rendezvous.
    this.ip("inet", ["link", "add", "br0", "type", "bridge"]);
    this.ip("inet", ["addr", "add", "203.0.113.1/24", "dev", "br0"]);
    this.ip("inet", ["link", "set", "br0", "up"]);
    for (const [name, host, dev, addr] of [
      ["w1", "nat1", "wan", `${ADDRESSES.nat1}/24`],
      ["w2", "nat2", "wan", `${ADDRESSES.nat2}/24`],
      ["wp", "pub", "eth0", `${ADDRESSES.pub}/24`],
    ] as const) {
      this.veth("inet", name, host, dev);
      this.ip("inet", ["link", "set", name, "master", "br0", "up"]);
      this.ip(host, ["addr", "add", addr, "dev", dev]);
      this.ip(host, ["link", "set", dev, "up"]);
      this.ip(host, ["route", "add", "default", "via", "203.0.113.1"]);
    }
    this.veth("inet", "r0", "rdv", "eth0");
    this.ip("inet", ["addr", "add", "198.51.100.1/24", "dev", "r0"]);
    this.ip("inet", ["link", "set", "r0", "up"]);
    this.ip("rdv", ["addr", "add", `${ADDRESSES.rdv}/24`, "dev", "eth0"]);
    this.ip("rdv", ["link", "set", "eth0", "up"]);
    this.ip("rdv", ["route", "add", "default", "via", "198.51.100.1"]);
    this.sysctl("inet", "net.ipv4.ip_forward", 1);
    // The LANs behind the routers (reachable from outside only with NAT type "none").
    for (const router of ["nat1", "nat2"] as const) {
      const { host, lan, net } = ROUTER_LAN[router];
      this.veth(router, "lan", host, "eth0");
      this.ip(router, ["addr", "add", `${lan}/24`, "dev", "lan"]);
      this.ip(router, ["link", "set", "lan", "up"]);
      this.ip(host, ["addr", "add", `${ADDRESSES[host]}/24`, "dev", "eth0"]);
      this.ip(host, ["link", "set", "eth0", "up"]);
      this.ip(host, ["route", "add", "default", "via", lan]);
      this.sysctl(router, "net.ipv4.ip_forward", 1);
      this.ip("inet", ["route", "add", net, "via", ADDRESSES[router]]);
    }
  }

  /**
   * Gives h1 and h2 IPv6 (ULA, fd00::/8) next to their private IPv4: the WAN
   * segment, both LANs and routes through nat1/nat2 and inet, with forwarding
   * and no NAT and no filter for IPv6 (the routers' nft tables are `ip`
   * family: IPv4 only). The rendezvous and pub stay IPv4-only.
   */
  enableIpv6(): void {
    if (!existsSync("/proc/sys/net/ipv6")) throw new Error("this kernel has no IPv6 (/proc/sys/net/ipv6 is missing)");
    for (const h of ["inet", "nat1", "nat2", "h1", "h2"] as const) this.sysctl(h, "net.ipv6.conf.all.disable_ipv6", 0);
    const addr = (host: Host, cidr: string, dev: string) => this.ip(host, ["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    addr("inet", `${ADDRESSES_V6.inet}/64`, "br0");
    for (const router of ["nat1", "nat2"] as const) {
      const { host } = ROUTER_LAN[router];
      const n = router === "nat1" ? 1 : 2;
      addr(router, `${ADDRESSES_V6[router]}/64`, "wan");
      addr(router, `fd00:${n}::1/64`, "lan");
      addr(host, `${ADDRESSES_V6[host]}/64`, "eth0");
      this.ip(router, ["-6", "route", "add", "default", "via", ADDRESSES_V6.inet]);
      this.ip(host, ["-6", "route", "add", "default", "via", `fd00:${n}::1`]);
      this.ip("inet", ["-6", "route", "add", `fd00:${n}::/64`, "via", ADDRESSES_V6[router]]);
      this.sysctl(router, "net.ipv6.conf.all.forwarding", 1);
    }
    this.sysctl("inet", "net.ipv6.conf.all.forwarding", 1);
    this.waitIpv6Ready();
  }

  /**
   * Neighbour discovery uses link-local addresses, which are "tentative" for
   * about 2 s after a link comes up (duplicate address detection); until
   * then the first IPv6 packets wait. Waits (up to 15 s) until none is left.
   */
  private waitIpv6Ready(): void {
    const hosts = ["inet", "nat1", "nat2", "h1", "h2"] as const;
    const deadline = performance.now() + 15_000;
    for (;;) {
      const pending = hosts.filter((h) => this.exec(h, ["ip", "-6", "addr", "show", "tentative"]).stdout.trim() !== "");
      if (pending.length === 0) return;
      if (performance.now() > deadline) throw new Error(`IPv6 addresses still tentative after 15 s on ${pending.join(", ")}`);
      Bun.sleepSync(50);
    }
  }

  /**
   * A home router's stateful IPv6 filter (no NAT): IPv6 from the WAN reaches
   * the LAN host only as a reply to something it sent (conntrack). `false`
   * removes it. Flushes the router's conntrack table either way.
   */
  setIpv6Firewall(router: Router, on: boolean): void {
    this.exec(router, ["nft", "delete", "table", "ip6", "pilotfw6"]);
    if (on) {
      const rules = `table ip6 pilotfw6 {\n  chain forward { type filter hook forward priority 0; policy accept;\n    ct state established,related accept\n    iifname "wan" counter drop\n  }\n}\n`;
      const r = this.exec(router, ["nft", "-f", "-"], rules);
      if (r.code !== 0) throw new Error(`nft ip6 firewall on ${router}: ${r.stderr.trim()}`);
    }
    this.flushConntrack(router);
  }

  /** IPv6 packets the stateful filter dropped so far on a router. */
  ipv6FirewallDrops(router: Router): number {
    const r = this.exec(router, ["nft", "list", "table", "ip6", "pilotfw6"]);
    const m = /counter packets (\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : 0;
  }

  /** Sets a router's NAT type and flushes its conntrack table (all mappings are new). */
  setNat(router: Router, type: NatType): void {
    this.nat[router] = type;
    this.remaps[router] = [];
    this.applyNat(router);
    this.flushConntrack(router);
  }

  natType(router: Router): NatType {
    return this.nat[router];
  }

  private applyNat(router: Router): void {
    const type = this.nat[router];
    const remapRules = this.remaps[router];
    const rules = [
      `table ip pilotnat {`,
      `  chain input { type filter hook input priority 0; policy accept;`,
      `    iifname "wan" ct state established,related accept`,
      type === "none" ? "" : `    iifname "wan" drop`,
      `  }`,
      `  chain forward { type filter hook forward priority 0; policy ${type === "none" ? "accept" : "drop"};`,
      `    ct state established,related accept`,
      `    iifname "lan" oifname "wan" accept`,
      `  }`,
      `  chain postrouting { type nat hook postrouting priority 100; policy accept;`,
      ...remapRules.map((r) => `    ${r}`),
      type === "none" ? "" : `    oifname "wan" masquerade${type === "symmetric" ? " random,fully-random" : ""}`,
      `  }`,
      `}`,
    ].join("\n");
    this.exec(router, ["nft", "delete", "table", "ip", "pilotnat"]);
    const r = this.exec(router, ["nft", "-f", "-"], rules);
    if (r.code !== 0) throw new Error(`nft on ${router}: ${r.stderr.trim()}\n${rules}`);
  }

  /**
   * A NAT rebinding: from now on the router maps `lanPort` of its LAN host to
   * public port `publicPort` (toward every destination), and forgets every
   * existing mapping. Peers see the host's datagrams arrive from a new port.
   */
  remapPort(router: Router, lanPort: number, publicPort: number): void {
    const { host } = ROUTER_LAN[router];
    this.remaps[router] = [`oifname "wan" ip saddr ${ADDRESSES[host]} udp sport ${lanPort} snat to ${ADDRESSES[router]}:${publicPort}`];
    this.applyNat(router);
    this.flushConntrack(router);
  }

  /** Drops `percent` % of everything the router forwards, in both directions (nft numgen). 0 removes it. */
  setLoss(router: Router, percent: number): void {
    this.exec(router, ["nft", "delete", "table", "inet", "pilotloss"]);
    if (percent <= 0) return;
    const rules = `table inet pilotloss {\n  chain forward { type filter hook forward priority -150; policy accept;\n    numgen random mod 100 < ${Math.round(percent)} counter drop\n  }\n}\n`;
    const r = this.exec(router, ["nft", "-f", "-"], rules);
    if (r.code !== 0) throw new Error(`nft loss on ${router}: ${r.stderr.trim()}`);
  }

  /**
   * A strict firewall on the router, for everything its LAN host sends or receives:
   * "no-udp" drops every UDP packet; "tcp-only" passes only TCP to the `allow`ed
   * "ip:port"s (e.g. an HTTP proxy on 443); "open" removes it.
   */
  setFirewall(router: Router, mode: "open" | "no-udp" | "tcp-only", ...allow: string[]): void {
    this.exec(router, ["nft", "delete", "table", "inet", "pilotfw"]);
    if (mode === "open") return;
    const rules: string[] = [];
    if (mode === "no-udp") rules.push("meta l4proto udp counter drop");
    else {
      for (const a of allow) {
        const [ip, port] = a.split(":");
        if (!ip || !port) throw new Error("setFirewall tcp-only needs ip:port to allow");
        rules.push(`ip daddr ${ip} tcp dport ${port} accept`, `ip saddr ${ip} tcp sport ${port} accept`);
      }
      rules.push("counter drop");
    }
    const table = ["table inet pilotfw {", "  chain forward { type filter hook forward priority -200; policy accept;", ...rules.map((r) => `    ${r}`), "  }", "}", ""].join("\n");
    const r = this.exec(router, ["nft", "-f", "-"], table);
    if (r.code !== 0) throw new Error(`nft firewall on ${router}: ${r.stderr.trim()}\n${table}`);
  }

  /** Packets the firewall dropped so far on a router. */
  firewallDrops(router: Router): number {
    const r = this.exec(router, ["nft", "list", "table", "inet", "pilotfw"]);
    const m = /counter packets (\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : 0;
  }

  /** Packets the loss rule dropped so far on a router. */
  lossDrops(router: Router): number {
    const r = this.exec(router, ["nft", "list", "table", "inet", "pilotloss"]);
    const m = /counter packets (\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : 0;
  }

  /** The router's conntrack UDP timeouts (unreplied and "stream"), in seconds. */
  setUdpTimeout(router: Router, seconds: number, streamSeconds = seconds): void {
    this.sysctl(router, "net.netfilter.nf_conntrack_udp_timeout", seconds);
    this.sysctl(router, "net.netfilter.nf_conntrack_udp_timeout_stream", streamSeconds);
  }

  flushConntrack(router: Router): void {
    const r = this.exec(router, [process.execPath, join(import.meta.dir, "conntrack-flush.ts")]);
    if (r.code !== 0) throw new Error(`conntrack flush on ${router}: ${r.stderr.trim()}`);
  }

  /** The router's conntrack table (UDP entries). */
  conntrack(router: Router): string[] {
    const r = this.exec(router, ["cat", "/proc/net/nf_conntrack"]);
    return r.stdout.split("\n").filter((l) => l.includes(" udp "));
  }

  /** Deletes every namespace (their veths go with them). Processes inside must be stopped first. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const h of HOSTS) run(["ip", "netns", "del", this.ns(h)]);
  }
}
