/**
 * The benchmark's own network: two namespaces joined by a veth pair (MTU
 * 1500), and userspace WireGuard (`wireguard-go`) between them. Addresses come
 * from the benchmarking range (RFC 2544, 198.18.0.0/15), so nothing here can
 * reach or collide with a real network:
 *
 *   veth:      A 198.18.250.1/24  <->  B 198.18.250.2/24
 *   wireguard: A 198.19.250.1/24  <->  B 198.19.250.2/24   (wireguard-go, MTU 1420)
 *
 * `removeLab` deletes both namespaces (which takes the veth and the tun
 * devices with them) after stopping wireguard-go; it runs from `finally`, on
 * SIGINT/SIGTERM and at exit. Namespaces left by an earlier run that was
 * killed (its pid is gone) are removed before a new lab is made.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const VETH_A = "198.18.250.1";
export const VETH_B = "198.18.250.2";
export const WG_A = "198.19.250.1";
export const WG_B = "198.19.250.2";

export interface Lab {
  readonly a: string;
  readonly b: string;
  /** wireguard-go's pids, A then B. */
  readonly wgPids: number[];
  readonly dir: string;
}

function sh(args: string[], input?: string): string {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8", input });
  if (r.status !== 0) throw new Error(`${args.join(" ")} failed: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  return r.stdout.trim();
}

const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

/** What is missing for the namespace rows, as an install hint; null when all is there. */
export function missingTools(): string | null {
  const missing: string[] = [];
  if (!has("wireguard-go")) missing.push("wireguard-go");
  if (!has("wg")) missing.push("wireguard-tools");
  if (!has("iperf3")) missing.push("iperf3");
  if (!has("wrk")) missing.push("wrk");
  if (!has("ping")) missing.push("iputils-ping");
  if (!has("ip")) missing.push("iproute2");
  return missing.length ? `apt-get install ${missing.join(" ")}` : null;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Namespaces named pbench-<pid>-a/b whose process is gone. */
function removeStale(): void {
  const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
  for (const line of list.split("\n")) {
    const m = /^(pbench-(\d+)-[ab])\b/.exec(line.trim());
    if (m && !alive(Number(m[2]))) spawnSync("ip", ["netns", "del", m[1]!]);
  }
}

const children: ChildProcess[] = [];
let current: Lab | null = null;

export function removeLab(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  if (!current) return;
  const lab = current;
  current = null;
  for (const pid of lab.wgPids) if (alive(pid)) process.kill(pid, "SIGTERM");
  spawnSync("ip", ["netns", "del", lab.a]);
  spawnSync("ip", ["netns", "del", lab.b]);
  rmSync(lab.dir, { recursive: true, force: true });
}

let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", removeLab);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      removeLab();
      process.exit(130);
    });
  }
}

async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return;
    await Bun.sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function makeLab(): Promise<Lab> {
  removeStale();
  hookExit();
  const a = `pbench-${process.pid}-a`;
  const b = `pbench-${process.pid}-b`;
  const dir = mkdtempSync("/tmp/pbench-wg-");
  const lab: Lab = { a, b, wgPids: [], dir };
  current = lab;
  const va = `pb${process.pid % 100000}a`;
  const vb = `pb${process.pid % 100000}b`;
  sh(["ip", "netns", "add", a]);
  sh(["ip", "netns", "add", b]);
  sh(["ip", "link", "add", va, "mtu", "1500", "type", "veth", "peer", "name", vb, "mtu", "1500"]);
  sh(["ip", "link", "set", va, "netns", a]);
  sh(["ip", "link", "set", vb, "netns", b]);
  for (const [ns, dev, ip] of [[a, va, VETH_A], [b, vb, VETH_B]] as const) {
    sh(["ip", "-n", ns, "addr", "add", `${ip}/24`, "dev", dev]);
    sh(["ip", "-n", ns, "link", "set", dev, "up"]);
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
  // WireGuard: keys, one wireguard-go per namespace, each the other's peer.
  const keys = [a, b].map(() => {
    const priv = sh(["wg", "genkey"]);
    return { priv, pub: sh(["wg", "pubkey"], priv + "\n") };
  });
  const sides = [
    { ns: a, dev: "wgpa", ip: WG_A, peerIp: WG_B, endpoint: `${VETH_B}:51820`, key: keys[0]!, peer: keys[1]! },
    { ns: b, dev: "wgpb", ip: WG_B, peerIp: WG_A, endpoint: `${VETH_A}:51820`, key: keys[1]!, peer: keys[0]! },
  ];
  for (const s of sides) {
    const proc = spawn("ip", ["netns", "exec", s.ns, "wireguard-go", "-f", s.dev], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LOG_LEVEL: "error" } });
    children.push(proc);
    lab.wgPids.push(proc.pid!);
    await waitFor(`wireguard-go's ${s.dev} in ${s.ns}`, () => spawnSync("ip", ["-n", s.ns, "link", "show", s.dev]).status === 0);
    const keyFile = join(dir, `${s.dev}.key`);
    writeFileSync(keyFile, s.key.priv + "\n", { mode: 0o600 });
    sh(["ip", "netns", "exec", s.ns, "wg", "set", s.dev, "listen-port", "51820", "private-key", keyFile, "peer", s.peer.pub, "allowed-ips", `${s.peerIp}/32`, "endpoint", s.endpoint]);
    sh(["ip", "-n", s.ns, "addr", "add", `${s.ip}/24`, "dev", s.dev]);
    sh(["ip", "-n", s.ns, "link", "set", s.dev, "up"]);
  }
  // The tunnel is up once a ping gets through (the first one makes the handshake).
  await waitFor("a ping over wireguard-go", () => spawnSync("ip", ["netns", "exec", a, "ping", "-c", "1", "-W", "1", WG_B]).status === 0, 10_000);
  return lab;
}

/** argv to run `argv` inside namespace `ns`. */
export const inNs = (ns: string, argv: string[]): string[] => ["ip", "netns", "exec", ns, ...argv];
