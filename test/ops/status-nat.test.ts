/**
 * `pilot status`'s path to the internet behind real NATs (the NAT lab's
 * network namespaces, test/natlab/): a public host says public; a host behind
 * a cone NAT says "nat" (type unknown) until a hole punch to another NATed
 * host works, then "cone"; behind a symmetric NAT it stays "nat". The CLI
 * runs inside the daemon's namespace, as it would on that machine.
 */
import { describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { labUnavailable, type Host } from "../natlab/lab.ts";
import { useLab, type LabDaemon } from "../natlab/support.ts";

const MAIN = join(resolve(import.meta.dir, "../.."), "src/cli/main.ts");
const why = process.env.PILOT_SKIP_NATLAB ? "PILOT_SKIP_NATLAB is set" : labUnavailable();
if (why) console.warn(`SKIPPED test/ops/status-nat.test.ts: the NAT lab cannot run here (${why})`);

describe.skipIf(why !== null)("pilot status behind real NATs", () => {
  const fixture = useLab({ nats: { nat1: "cone", nat2: "cone" } });

  async function status(host: Host, d: LabDaemon): Promise<any> {
    const proc = Bun.spawn(fixture.lab.wrap(host, [process.execPath, MAIN, "status", "--json"]), { env: { ...process.env, PILOT_HOME: d.home }, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`pilot status on ${host} failed (${code}): ${err}`);
    return JSON.parse(out).data.node;
  }

  async function beaconSeen(host: Host, d: LabDaemon): Promise<any> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const node = await status(host, d);
      if (node.observed_endpoint) return node;
      if (Date.now() > deadline) throw new Error(`the beacon never reported ${host}'s address`);
      await Bun.sleep(200);
    }
  }

  test("public host: public; cone NAT: type unknown, then cone once a punch works; symmetric: stays unknown", async () => {
    const pub = await fixture.pilot.daemon("pub");
    const h1 = await fixture.pilot.daemon("h1");
    const h2 = await fixture.pilot.daemon("h2");
    try {
      const p = await beaconSeen("pub", pub);
      expect(p.internet).toBe("public");
      expect(p.observed_endpoint).toBe(`203.0.113.20:${pub.port}`);

      let n1 = await beaconSeen("h1", h1);
      expect(n1.internet).toBe("nat");
      expect(n1.observed_endpoint).toStartWith("203.0.113.11:");
      expect(n1.internet_detail).toContain("not known until a hole punch succeeds");

      await h1.driver.call("ping", { target: h2.address });
      await fixture.pilot.waitPath(h1, h2, "punched");
      n1 = await status("h1", h1);
      expect(n1.internet).toBe("cone");
      expect(n1.internet_detail).toContain("hole punching works");
    } finally {
      await fixture.pilot.stopDaemon("pub");
      await fixture.pilot.stopDaemon("h1");
      await fixture.pilot.stopDaemon("h2");
    }

    fixture.lab.setNat("nat1", "symmetric");
    const s1 = await fixture.pilot.daemon("h1");
    const s2 = await fixture.pilot.daemon("h2");
    try {
      await s1.driver.call("ping", { target: s2.address });
      await Bun.sleep(3500); // the probing round gives up: relay
      expect((await fixture.pilot.peer(s1, s2))?.path).toBe("relay");
      const n = await beaconSeen("h1", s1);
      expect(n.internet).toBe("nat");
    } finally {
      await fixture.pilot.stopDaemon("h1");
      await fixture.pilot.stopDaemon("h2");
    }
  }, 120_000);
});
