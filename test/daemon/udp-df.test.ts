/**
 * Don't-fragment on the daemon's dual-stack UDP socket (path MTU discovery's
 * probes and every frame above the base), checked in two network namespaces
 * joined by a veth pair of MTU 1400:
 *
 * - a 1472-byte datagram to an IPv4 peer (an IPv4-mapped destination on the
 *   `::` socket) sent with don't-fragment is refused at once (EMSGSIZE,
 *   reported through onDontFragmentRefused), while the same datagram without
 *   it is fragmented locally and arrives (FragCreates grows): the IPv4 option
 *   takes effect for IPv4-mapped destinations, and only around DF sends;
 * - a GSO run of DF datagrams that fit the link leaves through GSO and
 *   arrives whole, unfragmented.
 *
 * Needs root (namespaces); skipped loudly otherwise.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const root = typeof process.getuid === "function" && process.getuid() === 0;
const A = `pl${process.pid}-dfa`;
const B = `pl${process.pid}-dfb`;
const HELPER = join(import.meta.dir, "udp-df-helper.ts");

function sh(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8" });
  return { code: r.status ?? -1, out: r.stdout ?? "", err: r.stderr ?? "" };
}
function must(args: string[]): string {
  const r = sh(args);
  if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.err}`);
  return r.out;
}
function snmp(ns: string, field: string): number {
  const lines = must(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]).split("\n").filter((l) => l.startsWith("Ip:"));
  return Number(lines[1]!.split(/\s+/)[lines[0]!.split(/\s+/).indexOf(field)]);
}

if (!root) {
  console.warn("\n*** udp-df.test.ts SKIPPED (not root: network namespaces need root): don't-fragment on the UDP socket is NOT being tested ***\n");
  test.skip("don't-fragment on the daemon's UDP socket (needs root)", () => {});
} else {
  beforeAll(() => {
    for (const ns of [A, B]) sh(["ip", "netns", "del", ns]);
    must(["ip", "netns", "add", A]);
    must(["ip", "netns", "add", B]);
    must(["ip", "-n", A, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", B]);
    must(["ip", "-n", A, "addr", "add", "198.18.251.1/24", "dev", "v0"]);
    must(["ip", "-n", B, "addr", "add", "198.18.251.2/24", "dev", "v1"]);
    for (const [ns, dev] of [[A, "v0"], [B, "v1"]] as const) {
      must(["ip", "-n", ns, "link", "set", dev, "mtu", "1400"]);
      must(["ip", "-n", ns, "link", "set", dev, "up"]);
      must(["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
  });
  afterAll(() => {
    for (const ns of [A, B]) sh(["ip", "netns", "del", ns]);
  });

  test("DF datagrams larger than the link are refused at once (IPv4-mapped on the :: socket); others fragment; DF runs use GSO", async () => {
    // A receiver in B: counts datagrams by size.
    const sink = Bun.spawn(["ip", "netns", "exec", B, process.execPath, "-e", `
      const sizes = {};
      const s = await Bun.udpSocket({ hostname: "0.0.0.0", port: 40400, socket: { data(_s, d) { sizes[d.length] = (sizes[d.length] ?? 0) + 1; } } });
      console.log("ready");
      await Bun.sleep(1500);
      console.log(JSON.stringify(sizes));
      process.exit(0);
    `], { stdout: "pipe", stderr: "inherit" });
    const reader = sink.stdout.getReader();
    let text = "";
    while (!text.includes("ready")) text += new TextDecoder().decode((await reader.read()).value);
    const fragsBefore = snmp(A, "FragCreates");
    const run = sh(["ip", "netns", "exec", A, process.execPath, HELPER, "198.18.251.2", "40400", "1372"]);
    expect(run.code).toBe(0);
    const report = JSON.parse(run.out.trim().split("\n").pop()!);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const received = JSON.parse(text.trim().split("\n").pop()!);
    expect(report.dualStack).toBe(true);
    // The DF 1472 was refused by our own stack; the plain 1472 went out in fragments and arrived whole.
    expect(report.refused).toEqual([1472]);
    expect(received["1472"]).toBe(1);
    expect(snmp(A, "FragCreates") - fragsBefore).toBe(2);
    // The run of eight DF datagrams that fit (1372 + 28 = 1400) left through GSO, unfragmented.
    expect(report.gsoSends).toBeGreaterThan(0);
    expect(received["1372"]).toBe(8);
    expect(report.dfDatagrams).toBe(8);
  }, 30_000);
}
