/**
 * Path MTU discovery across a router whose two links differ (RFC 8899
 * DPLPMTUD, with nothing relying on IP fragmentation):
 *
 *   h1 ──(MTU 9000)── nat1 (routing only, NAT type "none") ──(MTU 1500)── inet ── pub
 *
 * - h1's daemon sends bulk to pub's: its probes climb from the base; the
 *   9000-based probe leaves h1 (its own link carries it) and dies at nat1
 *   (don't-fragment); the path settles at the 1500-based size (1472), the
 *   transfer is byte-exact, and no IP fragment is made or reassembled
 *   anywhere (/proc/net/snmp FragCreates / ReasmReqds deltas in the
 *   namespaces).
 * - nat1's 1500 link drops to 1400 in the middle of a transfer: the 1472-byte
 *   frames (don't-fragment) die there, the stream's retransmission timeout
 *   drops the path to the base (1360: 1388 on the wire fits 1400), the new
 *   search ends there, and the transfer completes byte-exact, again with no
 *   fragments.
 *
 * Same prerequisites and skip rules as natlab.test.ts.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { BASE_DATA_FRAME } from "../../src/protocol/tunnel-frame.ts";
import type { Host, NatLab } from "./lab.ts";
import { natlabSuite, transfer, useLab, type LabDaemon, type LabPilot } from "./support.ts";

natlabSuite("pmtu", "path MTU discovery across links of different MTUs", pmtuLab);

function pmtuLab(): void {
  let lab: NatLab;
  let pilot: LabPilot;
  let a: LabDaemon;
  let b: LabDaemon;
  const measures: string[] = [];

  const fixture = useLab({
    nats: { nat1: "none", nat2: "cone" },
    prepare: (l) => {
      // h1's LAN is a jumbo-frame link; nat1's WAN stays at 1500.
      for (const [host, dev] of [["h1", "eth0"], ["nat1", "lan"]] as const) {
        const r = l.exec(host, ["ip", "link", "set", "dev", dev, "mtu", "9000"]);
        if (r.code !== 0) throw new Error(`mtu 9000 on ${host}/${dev}: ${r.stderr}`);
      }
    },
    report: () => (measures.length > 0 ? `\nNAT lab, path MTU:\n${measures.join("\n")}\n` : undefined),
  });
  beforeAll(async () => {
    lab = fixture.lab;
    pilot = fixture.pilot;
    a = await pilot.daemon("h1");
    b = await pilot.daemon("pub");
  });

  /** IPv4 fragmentation counters of a namespace (/proc/net/snmp is per network namespace). */
  function fragments(host: Host): { creates: number; reassembly: number } {
    const text = lab.exec(host, ["cat", "/proc/net/snmp"]).stdout;
    const lines = text.split("\n").filter((l) => l.startsWith("Ip:"));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/).map(Number);
    return { creates: values[names.indexOf("FragCreates")]!, reassembly: values[names.indexOf("ReasmReqds")]! };
  }

  function allFragments(): number[] {
    return (["h1", "nat1", "inet", "pub"] as const).flatMap((h) => {
      const f = fragments(h);
      return [f.creates, f.reassembly];
    });
  }

  async function waitSize(size: number, timeoutMs = 15_000): Promise<any> {
    const deadline = performance.now() + timeoutMs;
    let last: any;
    while (performance.now() < deadline) {
      last = await pilot.peer(a, b);
      if (last?.datagram_size === size && last?.pmtu === "complete") return last;
      await Bun.sleep(100);
    }
    throw new Error(`h1 -> pub: datagram size ${last?.datagram_size} (${last?.pmtu}), not ${size}, after ${timeoutMs} ms\n${a.log().split("\n").slice(-30).join("\n")}`);
  }

  describe("h1 (MTU 9000) to pub across a 1500 link", () => {
    test(
      "the search settles on the 1500-based size; the bulk transfer is byte-exact with no IP fragments",
      async () => {
        const before = allFragments();
        // Paced so that the search (a 9000-based probe lost three times, 1 s apart) ends during it.
        const r = await transfer(a, b, 40 << 20, { port: 5101, paceBytesPerSec: 8e6, timeoutMs: 60_000 });
        expect(r.bytes).toBe(40 << 20);
        const view = await waitSize(1472);
        expect(["direct", "punched"]).toContain(view.path);
        // A second, unpaced transfer at the settled size.
        const fast = await transfer(a, b, 64 << 20, { port: 5102, timeoutMs: 60_000 });
        measures.push(`  h1 -> pub, datagram size 1472: ${fast.mbytesPerSec.toFixed(1)} MB/s`);
        expect(allFragments()).toEqual(before);
      },
      120_000,
    );

    test(
      "the 1500 link drops to 1400 mid-transfer: black hole detected, back to the base, byte-exact, no fragments",
      async () => {
        await waitSize(1472);
        const before = allFragments();
        try {
          const r = await transfer(a, b, 40 << 20, {
            port: 5103,
            paceBytesPerSec: 8e6,
            timeoutMs: 90_000,
            duringAt: 8 << 20,
            during: () => {
              const s = lab.exec("nat1", ["ip", "link", "set", "dev", "wan", "mtu", "1400"]);
              if (s.code !== 0) throw new Error(`mtu 1400: ${s.stderr}`);
            },
          });
          expect(r.bytes).toBe(40 << 20);
          const view = await waitSize(BASE_DATA_FRAME);
          expect(view.datagram_size).toBe(BASE_DATA_FRAME);
          expect(allFragments()).toEqual(before);
        } finally {
          lab.exec("nat1", ["ip", "link", "set", "dev", "wan", "mtu", "1500"]);
        }
      },
      150_000,
    );
  });
}
