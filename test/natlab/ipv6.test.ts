/**
 * The NAT lab with IPv6: h1 and h2 sit behind IPv4 NATs (cone) and both also
 * have IPv6 (ULA addresses, routed through their routers with no NAT and no
 * filter: lab.enableIpv6). Dual-stack daemons (`--listen [::]:0`, ULA
 * admitted with PILOT_IPV6_ULA=1 as global addresses are in production)
 * register their IPv6 addresses, and
 *
 *   - the pair takes a direct IPv6 path (kind `direct`, the peer's IPv6
 *     endpoint in `pilot peers`), not the punched IPv4 one;
 *   - transfers are byte-exact both ways, cold and warm;
 *   - the same behind a home router's stateful IPv6 filter on both sides
 *     (inbound only as a reply: lab.setIpv6Firewall): the two sides' probes
 *     toward each other's IPv6 address open both filters, as punching does.
 *
 * Same prerequisites and skip rules as natlab.test.ts.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { ADDRESSES_V6, type NatLab } from "./lab.ts";
import { natlabSuite, transfer, useLab, type LabDaemon, type LabPilot } from "./support.ts";
import { runPilot } from "../support/cluster.ts";

natlabSuite("IPv6", "direct IPv6 paths", ipv6Lab);

function ipv6Lab(): void {
  let lab: NatLab;
  let pilot: LabPilot;
  const measures: string[] = [];

  const fixture = useLab({
    nats: { nat1: "cone", nat2: "cone" },
    prepare: (l) => l.enableIpv6(),
    report: () => (measures.length > 0 ? `\nNAT lab, direct over IPv6 (both behind IPv4 cone NATs):\n${measures.join("\n")}\n` : undefined),
  });
  beforeAll(() => {
    lab = fixture.lab;
    pilot = fixture.pilot;
  });

  const DUAL = { env: { PILOT_IPV6_ULA: "1" }, args: ["--listen", "[::]:0"] };
  const v6Endpoint = (ip: string) => new RegExp(`^\\[${ip.replaceAll(":", "\\:")}\\]:\\d+$`);

  /** h1 → h2 cold and warm, h2 → h1: byte-exact, over a direct IPv6 path both ways. */
  async function directOverIpv6(label: string): Promise<void> {
    let a: LabDaemon | undefined;
    let b: LabDaemon | undefined;
    try {
      a = await pilot.daemon("h1", DUAL.env, DUAL.args);
      b = await pilot.daemon("h2", DUAL.env, DUAL.args);
      const cold = await transfer(a, b, 1 << 20);
      expect(cold.bytes).toBe(1 << 20);
      const ab = await pilot.waitPath(a, b, "direct", 20_000);
      const ba = await pilot.waitPath(b, a, "direct", 20_000);
      expect(ab.endpoint).toMatch(v6Endpoint(ADDRESSES_V6.h2));
      expect(ba.endpoint).toMatch(v6Endpoint(ADDRESSES_V6.h1));
      const warm = await transfer(a, b, 8 << 20, { port: 5002 });
      expect(warm.bytes).toBe(8 << 20);
      const back = await transfer(b, a, 2 << 20, { port: 5003 });
      expect(back.bytes).toBe(2 << 20);
      // Still direct over IPv6 after the transfers (the punched IPv4 path never took over).
      expect(await pilot.peer(a, b)).toMatchObject({ path: "direct", endpoint: expect.stringMatching(v6Endpoint(ADDRESSES_V6.h2)), encrypted: true, authenticated: true });
      expect(await pilot.peer(b, a)).toMatchObject({ path: "direct", endpoint: expect.stringMatching(v6Endpoint(ADDRESSES_V6.h1)) });
      const text = await runPilot(["peers"], { env: { PILOT_HOME: a.home } });
      expect(text.stdout).toContain(`[${ADDRESSES_V6.h2}]:`);
      expect(text.stdout).toMatch(/direct/);
      const status = await runPilot(["--json", "status"], { env: { PILOT_HOME: a.home } });
      expect(status.json.data.node.endpoint).toMatch(/^\[::\]:\d+$/);
      measures.push(`  ${label.padEnd(34)} ttfb ${cold.ttfbMs.toFixed(1).padStart(6)} ms (cold)   ${warm.mbytesPerSec.toFixed(2).padStart(6)} MB/s (8 MiB warm)`);
      expect(cold.ttfbMs).toBeLessThan(1500);
    } finally {
      await pilot.stopDaemon("h1");
      await pilot.stopDaemon("h2");
    }
  }

  describe("two nodes behind IPv4 NATs that both have IPv6", () => {
    test("open IPv6 (no filter): a direct IPv6 path, byte-exact both ways, shown in pilot peers", () => directOverIpv6("open IPv6"), 90_000);

    test(
      "behind stateful IPv6 filters on both routers (unsolicited inbound dropped): both sides' probes open them, direct IPv6",
      async () => {
        lab.setIpv6Firewall("nat1", true);
        lab.setIpv6Firewall("nat2", true);
        try {
          await directOverIpv6("IPv6 behind stateful filters");
          // The filters were there: the first, unsolicited datagrams toward the other side were dropped.
          expect(lab.ipv6FirewallDrops("nat1") + lab.ipv6FirewallDrops("nat2")).toBeGreaterThan(0);
        } finally {
          lab.setIpv6Firewall("nat1", false);
          lab.setIpv6Firewall("nat2", false);
        }
      },
      90_000,
    );
  });
}
