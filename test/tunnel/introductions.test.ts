/**
 * Issue 9: initiations claiming 12,000 unregistered node ids made a public
 * node send one registry `resolve` each, spending its own request budget, so
 * its own `find`/`set-tags` got `rate_limited`. The lookups strangers cause
 * now have a budget of their own (src/daemon/introductions.ts), negative
 * answers are cached, and the node's own calls keep the registry's budget.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { loadIdentity } from "../../src/crypto/identity.ts";
import { DEFAULT_INTRODUCTION_LIMITS as L, introductionKey as key, Introductions, TRUSTED_INTRODUCTION_LIMITS as T } from "../../src/daemon/introductions.ts";
import { NodeError } from "../../src/daemon/local-node.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { floodInChild } from "./flood-sender.ts";

const missing = () => Promise.reject(new NodeError("not_found", "no such node"));

describe("Introductions (the strangers' registry budget)", () => {
  test("12,000 claimed ids from one address over 10 s: a handful of lookups", async () => {
    const intro = new Introductions();
    let lookups = 0;
    const runs: Promise<unknown>[] = [];
    for (let i = 0; i < 12_000; i++) {
      runs.push(intro.run(addressOf(0, 0x4000_0000 + i), key("203.0.113.9:5000"), i * (10_000 / 12_000), () => (lookups++, missing())));
      if (i % 100 === 0) await Promise.all(runs.splice(0));
    }
    await Promise.all(runs);
    expect(lookups).toBeLessThanOrEqual(L.perSourceBurst + 10 * L.perSourceRate + 1);
    expect(intro.stats.throttled + intro.stats.busy).toBeGreaterThan(11_900);
  });

  test("from many addresses: the daemon-wide budget holds (the registry allows 10/s per node; strangers get 3/s)", async () => {
    const intro = new Introductions();
    let lookups = 0;
    for (let i = 0; i < 12_000; i++) {
      await intro.run(addressOf(0, 0x4000_0000 + i), key(`10.${(i >> 8) & 255}.${i & 255}.1:5000`), i * (10_000 / 12_000), () => (lookups++, missing()));
    }
    expect(lookups).toBeLessThanOrEqual(L.lookupBurst + 10 * L.lookupRate + 1);
    expect(intro.sizes.sources).toBeLessThanOrEqual(L.maxSources);
    expect(intro.sizes.negative).toBeLessThanOrEqual(L.maxNegative);
  });

  test("a negative answer is remembered per node and source address; a transient failure is not", async () => {
    const intro = new Introductions({ perSourceBurst: 100, lookupBurst: 100 });
    let lookups = 0;
    const node = addressOf(0, 77);
    expect(await intro.run(node, key("198.51.100.1:1"), 0, () => (lookups++, missing()))).toBe("missing");
    expect(await intro.run(node, key("198.51.100.1:2"), 1000, () => (lookups++, missing()))).toBe("refused");
    expect(lookups).toBe(1);
    // Another address is not refused because of this one (no poisoning for others).
    expect(await intro.run(node, key("198.51.100.2:1"), 1000, () => (lookups++, Promise.resolve()))).toBe("found");
    expect(await intro.run(node, key("198.51.100.1:1"), L.negativeTtl + 1, () => (lookups++, Promise.resolve()))).toBe("found");
    const other = addressOf(0, 78);
    const flaky = () => (lookups++, Promise.reject(new NodeError("registry_unavailable", "away")));
    expect(await intro.run(other, key("198.51.100.1:1"), 0, flaky)).toBe("failed");
    expect(await intro.run(other, key("198.51.100.1:1"), 1, flaky)).toBe("failed");
    expect(lookups).toBe(5);
  });

  test("at most maxConcurrent lookups run; a second initiation for the same node waits for the running one", async () => {
    const intro = new Introductions({ perSourceBurst: 100, lookupBurst: 100 });
    const release: (() => void)[] = [];
    const slow = () => new Promise<void>((resolve) => release.push(resolve));
    const runs = [];
    for (let i = 0; i < 20; i++) runs.push(intro.run(addressOf(0, 1000 + i), key("198.51.100.3:1"), 0, slow));
    const joined = intro.run(addressOf(0, 1000), key("198.51.100.3:1"), 0, slow);
    expect(release.length).toBe(L.maxConcurrent);
    for (const r of release) r();
    const outcomes = await Promise.all(runs);
    expect(outcomes.filter((o) => o === "found").length).toBe(L.maxConcurrent);
    expect(await joined).toBe("found");
    expect(intro.sizes.running).toBe(0);
  });

  test("claims of a trusted node's id (offline, so it does not resolve) cost at most one lookup per 5 s each, within the trusted budget", async () => {
    const intro = new Introductions(T);
    let lookups = 0;
    const offline = () => (lookups++, Promise.reject(new NodeError("unreachable", "no endpoint")));
    for (let i = 0; i < 10_000; i++) {
      const node = addressOf(0, 10 + (i % 3)); // three trusted nodes, all offline
      await intro.run(node, `node:${node}`, i, offline); // 10 000 claims over 10 s
    }
    expect(lookups).toBeLessThanOrEqual(3 * (10_000 / T.negativeTtl + 1));
    // Back online: after the short negative cache it is introduced again.
    expect(await intro.run(addressOf(0, 10), `node:${addressOf(0, 10)}`, 10_000 + T.negativeTtl, () => Promise.resolve())).toBe("found");
  });

  test("re-lookups of untrusted peers draw on the same budget", () => {
    const intro = new Introductions();
    let allowed = 0;
    for (let i = 0; i < 1000; i++) if (intro.mayRefresh(i)) allowed++;
    expect(allowed).toBeLessThanOrEqual(L.lookupBurst + L.lookupRate + 1); // 1000 tries within one second
  });
});

describe("a public node flooded with initiations for unregistered ids", () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ daemons: [{ name: "victim", hostname: "intro-victim", public: true }] });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
  });

  test("12,000 claimed ids in 3 s (from an attacker that even answers cookies): the node's own find and set-tags still succeed", async () => {
    const victim = c.daemon("victim");
    const info = (await c.pilot("victim", ["info"])).json.data;
    const victimKey = Buffer.from(loadIdentity(join(victim.home, "identity.json")).publicKey).toString("base64");
    const flood = floodInChild({ target: info.endpoint, victimKey, rate: 4_000, seconds: 3, mode: "claims", victimAddress: victim.address, count: 12_000, cookies: true });
    // The node's own registry calls, all through the flood and the second after it (on the old
    // code they failed with rate_limited from about 1.5 s into the flood until after its end).
    const own: { code: number; stderr: string }[] = [];
    let done = false;
    const sent = await Promise.all([
      flood.finally(() => Bun.sleep(1000).then(() => (done = true))),
      (async () => {
        await Bun.sleep(300);
        for (let i = 0; !done; i++) {
          own.push(await c.pilot("victim", i % 2 === 0 ? ["find", "intro-victim"] : ["set-tags", `t${i}`]));
          await Bun.sleep(100);
        }
        own.push(await c.pilot("victim", ["set-tags", "after-flood"]));
      })(),
    ]).then(([s]) => s);
    expect(own.length).toBeGreaterThan(6);
    expect(sent.sent).toBeGreaterThanOrEqual(11_000);
    for (const r of own) expect(r.stderr).toBe("");
    for (const r of own) expect(r.code).toBe(0);
    const after = (await c.pilot("victim", ["info"])).json.data;
    expect(after.tags).toEqual(["after-flood"]);
    // The claims did decrypt and ask for introductions; a handful became lookups.
    expect(after.introductions.lookups).toBeGreaterThan(0);
    expect(after.introductions.throttled + after.introductions.busy).toBeGreaterThan(10);
    expect(after.introductions.lookups).toBeLessThanOrEqual(L.perSourceBurst + 8 * L.perSourceRate);
    expect(after.peers).toBe(0);
  }, 60_000);
});
