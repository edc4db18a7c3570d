/**
 * The rendezvous's operator page (`pilot rendezvous --dashboard HOST:PORT`):
 * aggregate counts that follow real daemons, and nothing about any node: the
 * page, its script, its stats and the page as Chromium renders it never
 * contain a private node's address, hostname or tags, nor a public one's,
 * nor anything of the trust between them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { chromiumPath, launchChromium, type Browser } from "./chromium.ts";

const isRoot = process.getuid?.() === 0;
const haveChromium = chromiumPath() !== null;
if (!haveChromium && !isRoot) console.warn("SKIPPED: the operator page's browser test needs chromium (apt-get install chromium)");

let c: Cluster;
let page: string;

beforeAll(async () => {
  c = await startCluster({
    rendezvousArgs: ["--dashboard", "127.0.0.1:0"],
    daemons: [
      { name: "hidden", hostname: "covert-agent-7", tags: ["secret-tag-alpha", "ops-only"] },
      { name: "hidden2", hostname: "quiet-agent-9", tags: ["secret-tag-beta"] },
      { name: "open", hostname: "open-agent-3", public: true, tags: ["visible-tag"] },
    ],
  });
  // A trust pair between the private nodes: part of the graph the page must not show.
  await c.trust("hidden", "hidden2");
  page = c.rendezvousReady.dashboard;
}, 60_000);

afterAll(async () => {
  await c?.stop();
});

function secrets(): string[] {
  const out: string[] = [];
  for (const name of ["hidden", "hidden2", "open"]) out.push(c.daemon(name).address);
  out.push("covert-agent-7", "quiet-agent-9", "open-agent-3", "secret-tag-alpha", "ops-only", "secret-tag-beta", "visible-tag");
  return out;
}

describe("the rendezvous operator page", () => {
  test("aggregate counts follow the daemons", async () => {
    expect(page).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const stats = (await (await fetch(new URL("/api/stats", page))).json()) as any;
    expect(stats.nodes.total).toBe(3);
    expect(stats.nodes.active).toBe(3);
    expect(stats.nodes.online).toBe(3);
    expect(stats.registry.requests).toBeGreaterThan(10);
    expect(stats.registry.connections).toBeGreaterThanOrEqual(3);
    expect(stats.beacon.registered).toBe(3);
    expect(stats.beacon.registrations).toBeGreaterThanOrEqual(3);
    for (const k of ["punches", "relayed_frames", "relayed_bytes", "relay_refused", "relay_rate_limited"]) expect(typeof stats.beacon[k]).toBe("number");
    // A daemon that stops is no longer online; it stays registered.
    await c.stopDaemon("hidden2");
    let after: any;
    for (let i = 0; i < 50; i++) {
      after = await (await fetch(new URL("/api/stats", page))).json();
      if (after.nodes.online === 2) break;
      await Bun.sleep(100);
    }
    expect(after.nodes.online).toBe(2);
    expect(after.nodes.total).toBe(3);
    expect(after.registry.requests).toBeGreaterThan(stats.registry.requests - 1);
  });

  test("no node address, hostname or tag anywhere in what it serves", async () => {
    for (const path of ["/", "/page.js", "/page.css", "/api/stats"]) {
      const r = await fetch(new URL(path, page));
      expect(r.status).toBe(200);
      expect(r.headers.get("access-control-allow-origin")).toBeNull();
      expect(r.headers.get("content-security-policy")).toContain("default-src 'none'");
      const body = await r.text();
      for (const s of secrets()) expect(body).not.toContain(s);
    }
    expect((await fetch(new URL("/api/nodes", page))).status).toBe(404);
    expect((await fetch(new URL("/api/stats", page), { method: "POST" })).status).toBe(405);
  });

  test.skipIf(!haveChromium && !isRoot)("rendered in Chromium: the counts, and still nothing about any node", async () => {
    if (!haveChromium) throw new Error("chromium is not installed; CI (root) must have it: apt-get install chromium");
    let browser: Browser | undefined;
    try {
      browser = await launchChromium({ width: 1000, height: 700 });
      await browser.navigate(page);
      await browser.waitFor(`document.body.dataset.ready === "true"`);
      expect(await browser.evaluate<string>(`document.getElementById("nodes-total").textContent`)).toBe("3");
      const dom = await browser.evaluate<string>("document.documentElement.outerHTML");
      for (const s of secrets()) expect(dom).not.toContain(s);
    } finally {
      await browser?.close();
    }
  }, 60_000);
});

describe("the operator page's cost", () => {
  test("a flood of stats requests counts the store once per 2 s", async () => {
    const { startRendezvousDashboard } = await import("../../src/registry/dashboard/server.ts");
    let calls = 0;
    let now = 1_000_000;
    const zero = { nodes: { online: 0, active: 0, total: 0 }, registry: { connections: 0, requests: 0 }, beacon: { registered: 0, registrations: 0, punches: 0, relayed_frames: 0, relayed_bytes: 0, relay_refused: 0, relay_rate_limited: 0 }, uptime_secs: 0 };
    const page = startRendezvousDashboard({ host: "127.0.0.1", port: 0, clock: () => now, stats: async () => (calls++, zero) });
    try {
      const url = `http://127.0.0.1:${page.port}/api/stats`;
      const answers = await Promise.all(Array.from({ length: 200 }, () => fetch(url).then((r) => r.status)));
      expect(answers.every((s) => s === 200)).toBe(true);
      expect(calls).toBe(1);
      now += 2000;
      await fetch(url);
      expect(calls).toBe(2);
    } finally {
      page.close();
    }
  });
});
