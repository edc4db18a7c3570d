/**
 * A stranger floods a public node with handshake initiations (valid mac1 for
 * its registered key, junk Noise bytes) while a trusted peer pings it. Prints
 * the trusted peer's ping loss and latency and the victim daemon's CPU, first
 * without the flood, then with it, then with a flood that reads cookie replies
 * and adds mac2 (a careful attacker, on the same address as the trusted peer).
 *
 *   bun scripts/bench/handshake-flood.ts [--rate 40000] [--seconds 5]
 *
 * Everything runs on 127.0.0.1: a rendezvous, the victim (public), the
 * trusted peer, and the flood sender in its own process. Each flood phase ends
 * with the goal (trusted ping loss 0 %, p99 <= 50 ms) and whether it was met;
 * test/tunnel/handshake-flood.test.ts asserts only a looser bound, as a loaded 2-core CI
 * cannot promise 50 ms.
 */
import { join } from "node:path";
import { loadIdentity } from "../../src/crypto/identity.ts";
import { connect } from "../../src/driver/index.ts";
import { startCluster } from "../../test/support/cluster.ts";
import { cpuSeconds, pingSeries, rssMiB, type PingSummary } from "../../test/tunnel/flood-probe.ts";
import { floodInChild, type FloodResult, type FloodSpec } from "../../test/tunnel/flood-sender.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const fmt = (p: PingSummary) =>
  `loss ${p.lossPct.toFixed(1)} % (${p.sent - p.received}/${p.sent}), p50 ${p.p50.toFixed(2)} ms, p99 ${p.p99.toFixed(2)} ms, max ${p.max.toFixed(1)} ms`;

/** The goal of issue 9 at 40k initiations/s: the trusted peer's pings lose nothing and p99 <= 50 ms. */
const GOAL_P99_MS = 50;
const goal = (p: PingSummary) =>
  `goal loss 0 % and p99 <= ${GOAL_P99_MS} ms: ${p.received === p.sent && p.p99 <= GOAL_P99_MS ? "met" : "NOT met"} (loss ${p.lossPct.toFixed(1)} %, p99 ${p.p99.toFixed(2)} ms)`;

async function infoOf(home: string): Promise<unknown> {
  const d = await connect({ home });
  try {
    return await d.call("info");
  } finally {
    await d.close();
  }
}

async function main() {
  const rate = arg("rate", 40_000);
  const seconds = arg("seconds", 5);
  console.log(`Handshake flood benchmark: ${rate}/s initiations with a valid mac1 for ${seconds} s; trusted pings every 10 ms`);
  const c = await startCluster({ daemons: [{ name: "victim", hostname: "flood-victim", public: true }, { name: "friend" }] });
  try {
    await c.trust("victim", "friend");
    const victim = c.daemon("victim");
    const friend = await connect({ home: c.daemon("friend").home });
    const victimKey = Buffer.from(loadIdentity(join(victim.home, "identity.json")).publicKey).toString("base64");
    const victimInfo = (await infoOf(victim.home)) as { endpoint: string };
    await friend.call("ping", { target: victim.address, seq: 1 }); // tunnel up first

    const phase = async (spec: FloodSpec | null) => {
      const cpu0 = cpuSeconds(victim.pid);
      const t0 = performance.now();
      const floodRun: Promise<FloodResult | null> = spec ? floodInChild(spec) : Promise.resolve(null);
      const pings = await pingSeries(friend, victim.address, seconds * 1000);
      const floodResult = await floodRun;
      const cpu = ((cpuSeconds(victim.pid) - cpu0) / ((performance.now() - t0) / 1000)) * 100;
      return { pings, cpu, flood: floodResult };
    };
    const spec = (cookies: boolean): FloodSpec => ({ target: victimInfo.endpoint, victimKey, rate, seconds, mode: "junk", cookies });

    const quiet = await phase(null);
    console.log(`no flood             trusted ping ${fmt(quiet.pings)} | victim CPU ${quiet.cpu.toFixed(0)} %`);
    const junk = await phase(spec(false));
    console.log(
      `flood                trusted ping ${fmt(junk.pings)} | victim CPU ${junk.cpu.toFixed(0)} % | sent ${(junk.flood!.sent / junk.flood!.seconds).toFixed(0)}/s, cookie replies ${junk.flood!.cookieReplies}`,
    );
    console.log(`                     ${goal(junk.pings)}`);
    const careful = await phase(spec(true));
    console.log(
      `flood + cookies/mac2 trusted ping ${fmt(careful.pings)} | victim CPU ${careful.cpu.toFixed(0)} % | sent ${(careful.flood!.sent / careful.flood!.seconds).toFixed(0)}/s, cookie replies ${careful.flood!.cookieReplies}`,
    );
    console.log(`                     ${goal(careful.pings)}`);
    const after = (await infoOf(victim.home)) as Record<string, unknown>;
    if (after.tunnel) console.log(`victim tunnel counters ${JSON.stringify(after.tunnel)}`);
    console.log(`victim RSS ${rssMiB(victim.pid).toFixed(1)} MiB, peers ${after.peers}`);
    await friend.close();
  } finally {
    await c.stop();
  }
}

await main();
