/**
 * The NAT lab behind a strict firewall: h1's router drops every UDP packet
 * (an nft rule on its forward path), as corporate and hotel networks do. The
 * daemons are given the rendezvous's relay over WebSocket (`--relay-ws`), and
 *
 *   - h1 reaches h2 and is reached by it through `relay-tcp` (the WebSocket
 *     relay on TCP 443 of the rendezvous), byte-exact both ways, cold and warm;
 *   - when the firewall lets UDP through again in the middle of an open
 *     stream, the pair moves to a UDP path (punched: both are behind cone
 *     NATs) and the stream carries on with every byte in order;
 *   - with only TCP to an HTTP CONNECT proxy (pub, port 443) let through,
 *     HTTPS_PROXY carries both the registry and the relay through the proxy
 *     to the rendezvous's WebSocket port.
 *
 * Time to first byte and throughput through the WebSocket relay are printed.
 * Same prerequisites and skip rules as natlab.test.ts.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ADDRESSES, type Host, type NatLab } from "./lab.ts";
import { natlabSuite, RELAY_WS, transfer, useLab, type LabDaemon, type LabPilot } from "./support.ts";
import { runPilot } from "../support/cluster.ts";

natlabSuite("firewall", "relay-tcp (the relay over WebSocket) and HTTPS_PROXY", firewallLab);

function firewallLab(): void {
  let lab: NatLab;
  let pilot: LabPilot;
  const measures: string[] = [];

  const fixture = useLab({
    nats: { nat1: "cone", nat2: "cone" },
    // The relay's per-node budget (4 MiB/s by default, the same over UDP and WebSocket) is raised
    // here so that the warm transfer measures what the WebSocket relay itself carries.
    rendezvousArgs: ["--relay-rate", "256MiB"],
    report: () => (measures.length > 0 ? `\nNAT lab, relay over WebSocket:\n${measures.join("\n")}\n` : undefined),
  });
  beforeAll(() => {
    lab = fixture.lab;
    pilot = fixture.pilot;
  });

  const RELAY_ARGS = ["--relay-ws", RELAY_WS];

  async function withPair(aHost: Host, bHost: Host, body: (a: LabDaemon, b: LabDaemon) => Promise<void>, aEnv: Record<string, string> = {}): Promise<void> {
    try {
      const a = await pilot.daemon(aHost, aEnv, RELAY_ARGS);
      const b = await pilot.daemon(bHost, {}, RELAY_ARGS);
      await body(a, b);
    } finally {
      await pilot.stopDaemon(aHost);
      await pilot.stopDaemon(bHost);
      lab.setFirewall("nat1", "open");
    }
  }

  describe("a strict firewall at h1's router", () => {
    test(
      "h1 reaches h2 and is reached by it over relay-tcp, byte-exact both ways",
      async () => {
        lab.setFirewall("nat1", "no-udp");
        await withPair("h1", "h2", async (a, b) => {
          const cold = await transfer(a, b, 1 << 20, { timeoutMs: 30_000 });
          expect(cold.bytes).toBe(1 << 20);
          const there = await pilot.waitPath(a, b, "relay-tcp");
          expect(there.endpoint).toBe(RELAY_WS);
          // h2's own side of the relay is UDP: to it, h1 is simply relayed.
          await pilot.waitPath(b, a, "relay");
          const warm = await transfer(a, b, 8 << 20, { port: 5002, timeoutMs: 60_000 });
          const back = await transfer(b, a, 1 << 20, { port: 5003, timeoutMs: 30_000 });
          expect(back.bytes).toBe(1 << 20);
          measures.push(`  relay-tcp  h1 (UDP blocked) -> h2   ttfb ${cold.ttfbMs.toFixed(1).padStart(7)} ms   ${warm.mbytesPerSec.toFixed(2).padStart(6)} MB/s (8 MiB warm)`);
          expect(cold.ttfbMs).toBeLessThan(1500);
          // No UDP path can appear: still relay-tcp after probing rounds, and the firewall did drop UDP.
          await Bun.sleep(3500);
          expect((await pilot.peer(a, b))?.path).toBe("relay-tcp");
          expect(lab.firewallDrops("nat1")).toBeGreaterThan(0);
          // What people see.
          const cli = await runPilot(["--json", "peers"], { env: { PILOT_HOME: a.home } });
          const row = cli.json.data.peers.find((p: any) => p.node_id === b.nodeId);
          expect(row).toMatchObject({ path: "relay-tcp", endpoint: RELAY_WS, encrypted: true, authenticated: true });
          // A relayed path is never probed for a larger size: the base frame, both ways.
          expect(row).toMatchObject({ datagram_size: 1360, pmtu: "disabled" });
          expect(await pilot.peer(b, a)).toMatchObject({ datagram_size: 1360, pmtu: "disabled" });
          const text = await runPilot(["peers"], { env: { PILOT_HOME: a.home } });
          expect(text.stdout).toMatch(/relay-tcp/);
          const status = await runPilot(["--json", "status"], { env: { PILOT_HOME: a.home } });
          expect(status.json.data.node.relay_tcp).toMatchObject({ url: RELAY_WS, connected: true, in_use: true });
          expect(a.log()).toMatch(/relaying over WebSocket/);
        });
      },
      90_000,
    );

    test(
      "UDP allowed again mid-stream: the pair moves to a punched path, 0 bytes lost",
      async () => {
        lab.setFirewall("nat1", "no-udp");
        await withPair("h1", "h2", async (a, b) => {
          const server = await b.driver.listen(5004);
          const chunks: Buffer[] = [];
          let received = 0;
          server.once("connection", (s: any) => s.on("error", () => {}).on("data", (c: Buffer) => (chunks.push(c), (received += c.length))));
          const socket = await a.driver.dial(b.address, 5004, { timeoutMs: 20_000 });
          socket.on("error", () => {});
          let sent = 0;
          const write = async (n: number) => {
            const chunk = new Uint8Array(n);
            for (let i = 0; i < n; i++) chunk[i] = ((sent + i) * 31 + 7) & 0xff;
            sent += n;
            if (!socket.write(chunk)) await new Promise<void>((r) => socket.once("drain", () => r()));
          };
          await write(256 << 10);
          await pilot.waitPath(a, b, "relay-tcp");
          // Open the firewall and keep the stream busy until both sides are on the punched path.
          lab.setFirewall("nat1", "open");
          const deadline = performance.now() + 40_000;
          let moved = false;
          while (!moved && performance.now() < deadline) {
            await write(16 << 10);
            await Bun.sleep(25);
            moved = (await pilot.peer(a, b))?.path === "punched" && (await pilot.peer(b, a))?.path === "punched";
          }
          if (!moved) await pilot.waitPath(a, b, "punched", 1); // fails with both logs
          await write(1 << 20);
          const until = performance.now() + 30_000;
          while (received < sent && performance.now() < until) await Bun.sleep(20);
          const all = Buffer.concat(chunks);
          expect(all.length).toBe(sent);
          let bad = -1;
          for (let i = 0; i < all.length; i++) {
            if (all[i] !== ((i * 31 + 7) & 0xff)) {
              bad = i;
              break;
            }
          }
          expect(bad).toBe(-1);
          expect(a.log()).toMatch(/path changed .*from=relay-tcp/);
          socket.destroy();
          await server.close();
        });
      },
      120_000,
    );

    test(
      "only TCP to an HTTP CONNECT proxy on 443: the registry and the relay go through the proxy, with basic auth",
      async () => {
        const proxyAddr = `${ADDRESSES.pub}:443`;
        const proxy = await pilot.helper("pub", join(import.meta.dir, "../support/connect-proxy.ts"), [ADDRESSES.pub, "443", "agent:s3cret"], "listening");
        try {
          lab.setFirewall("nat1", "tcp-only", proxyAddr);
          await withPair(
            "h1",
            "h2",
            async (a, b) => {
              const there = await transfer(a, b, 1 << 20, { timeoutMs: 30_000 });
              expect(there.bytes).toBe(1 << 20);
              const back = await transfer(b, a, 1 << 20, { port: 5002, timeoutMs: 30_000 });
              expect(back.bytes).toBe(1 << 20);
              await pilot.waitPath(a, b, "relay-tcp");
              // Two tunnels through the proxy: the registry's WebSocket and the relay's.
              expect(proxy.output().split("\n").filter((l) => l === `CONNECT ${ADDRESSES.rdv}:443`).length).toBeGreaterThanOrEqual(2);
              expect(a.log()).not.toMatch(/registry heartbeat failed/);
              measures.push(`  relay-tcp  h1 (CONNECT proxy only) -> h2   ttfb ${there.ttfbMs.toFixed(1).padStart(7)} ms`);
              expect(lab.firewallDrops("nat1")).toBeGreaterThan(0);
            },
            { HTTPS_PROXY: `http://agent:s3cret@${proxyAddr}`, NO_PROXY: "" },
          );
        } finally {
          await proxy.stop();
        }
      },
      90_000,
    );
  });
}
