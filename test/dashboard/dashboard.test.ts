/**
 * The daemon's dashboard against real daemons: `pilot --json dashboard` gives
 * the URL; fetch checks who may look (token, Host header, no CORS, CSP);
 * headless Chromium loads the page, sees a peer's traffic counters rise as
 * `pilot bench` runs between the daemons (without a reload), and takes a
 * screenshot whose DOM shows this node's address and the peer's row.
 *
 * Chromium missing: the test fails when run as root (CI installs it, so it
 * never skips silently there) and skips, loudly, for a normal user.
 * PILOT_DASHBOARD_SCREENSHOT=docs/dashboard.png keeps the screenshot.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { chromiumPath, launchChromium, type Browser } from "./chromium.ts";
import { gw, privateSubnet, stopGateways } from "../gateway/support.ts";

const isRoot = process.getuid?.() === 0;
const haveChromium = chromiumPath() !== null;
if (!haveChromium && !isRoot) console.warn("SKIPPED: the dashboard's browser test needs chromium (apt-get install chromium)");

let c: Cluster;
let url: string;
let address: string;
let token: string;

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "dash-alpha", tags: ["dashboard"] }, { name: "b", hostname: "dash-beta" }] });
  await c.trust("a", "b");
  const r = await c.pilot("a", ["dashboard"]);
  expect(r.code).toBe(0);
  url = r.json.data.url;
  address = r.json.data.address;
  token = new URL(url).searchParams.get("token")!;
}, 60_000);

afterAll(async () => {
  await stopGateways();
  await c?.stop();
});

/** PNG width and height from its IHDR chunk. */
function pngSize(png: Uint8Array): { width: number; height: number } {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (!sig.every((b, i) => png[i] === b)) throw new Error("not a PNG");
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

describe("pilot dashboard", () => {
  test("prints the loopback URL with a 32-byte token, kept 0600 in the state directory", async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64}$/);
    expect(address).toBe(url.slice(0, url.indexOf("?")));
    const r = await c.pilot("a", ["dashboard"]);
    expect(r.json.data.url).toBe(url);
    const file = join(c.daemon("a").home, "dashboard_token");
    expect(r.json.data.token_file).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = await c.pilot("a", ["dashboard"], { json: false });
    expect(text.stdout).toContain(url);
  });

  test("the token is required: missing or wrong is 401; right as ?token=, cookie or bearer", async () => {
    const state = new URL("/api/state", address).toString();
    expect((await fetch(state)).status).toBe(401);
    expect((await fetch(address)).status).toBe(401);
    expect((await fetch(`${state}?token=${"0".repeat(64)}`, { redirect: "manual" })).status).toBe(401);
    expect((await fetch(state, { headers: { authorization: `Bearer ${"1".repeat(64)}` } })).status).toBe(401);
    expect((await fetch(state, { headers: { authorization: `Bearer ${token.slice(0, 63)}` } })).status).toBe(401);
    expect((await fetch(state, { headers: { cookie: `pilot_dashboard_${new URL(address).port}=${token}x` } })).status).toBe(401);
    // A forwarded header makes no one local or authorised.
    expect((await fetch(state, { headers: { "x-forwarded-for": "127.0.0.1", "x-real-ip": "127.0.0.1", forwarded: "for=127.0.0.1" } })).status).toBe(401);

    const first = await fetch(url, { redirect: "manual" });
    expect(first.status).toBe(303);
    expect(first.headers.get("location")).toBe("/");
    const cookie = first.headers.get("set-cookie")!;
    expect(cookie).toContain(`pilot_dashboard_${new URL(address).port}=${token}`);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Strict");
    const withCookie = await fetch(state, { headers: { cookie: cookie.split(";")[0]! } });
    expect(withCookie.status).toBe(200);
    // A cookie of the same name planted by another local server (cookies ignore ports) does not lock the owner out.
    const planted = `pilot_dashboard_${new URL(address).port}=${"f".repeat(64)}`;
    expect((await fetch(state, { headers: { cookie: `${planted}; ${cookie.split(";")[0]!}` } })).status).toBe(200);
    expect((await fetch(state, { headers: { cookie: planted } })).status).toBe(401);
    const bearer = await fetch(state, { headers: { authorization: `Bearer ${token}` } });
    expect(bearer.status).toBe(200);
    const body = (await bearer.json()) as any;
    expect(body.node.address).toBe(c.daemon("a").address);
  });

  test("a wrong Host header is 403 (DNS rebinding), even with the token; no CORS; a strict CSP", async () => {
    const state = new URL("/api/state", address).toString();
    const auth = { authorization: `Bearer ${token}` };
    for (const host of ["evil.example", `evil.example:${new URL(address).port}`, "127.0.0.1:1", `127.0.0.2:${new URL(address).port}`]) {
      expect((await fetch(state, { headers: { ...auth, host } })).status).toBe(403);
    }
    const local = await fetch(state, { headers: { ...auth, host: `localhost:${new URL(address).port}`, origin: "http://evil.example" } });
    expect(local.status).toBe(200);
    expect(local.headers.get("access-control-allow-origin")).toBeNull();
    expect(local.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(local.headers.get("content-security-policy")).toContain("script-src 'self'");
    const preflight = await fetch(state, { method: "OPTIONS", headers: { origin: "http://evil.example", "access-control-request-method": "GET" } });
    expect(preflight.status).toBe(405);
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    expect((await fetch(state, { method: "POST", headers: auth })).status).toBe(405);
    const page = await fetch(address, { headers: auth });
    expect(page.status).toBe(200);
    const html = await page.text();
    // No inline script or style: the CSP allows neither.
    expect(html).not.toMatch(/<script>|<style|\sstyle=|\son[a-z]+=/i);
  });

  test("--dashboard pins the address or turns it off; a non-loopback address is a usage error", async () => {
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const port = probe.port!;
    probe.stop(true);
    await c.startDaemon({ name: "pinned", extraArgs: ["--dashboard", `127.0.0.1:${port}`] });
    const pinned = await c.pilot("pinned", ["dashboard"]);
    expect(pinned.json.data.address).toBe(`http://127.0.0.1:${port}/`);
    expect((await fetch(pinned.json.data.address, { headers: { authorization: `Bearer ${new URL(pinned.json.data.url).searchParams.get("token")}` } })).status).toBe(200);
    // Each home has its own token, kept across restarts.
    expect(new URL(pinned.json.data.url).searchParams.get("token")).not.toBe(token);
    await c.stopDaemon("pinned");
    await c.startDaemon({ name: "pinned", extraArgs: ["--dashboard", `127.0.0.1:${port}`] });
    expect((await c.pilot("pinned", ["dashboard"])).json.data.url).toBe(pinned.json.data.url);

    await c.startDaemon({ name: "off", extraArgs: ["--dashboard", "off"] });
    const off = await c.pilot("off", ["dashboard"]);
    expect(off.code).toBe(1);
    expect(off.json.code).toBe("not_found");
    expect(off.json.hint).toContain("--dashboard");

    for (const bad of ["0.0.0.0:8484", "192.0.2.1:80", "nope"]) {
      const r = await c.pilot("off", ["daemon", "start", "--dashboard", bad]);
      expect(r.code).toBe(2);
      expect(r.json.code).toBe("invalid_argument");
    }
    expect((await c.pilot("off", ["config", "--set", "dashboard=0.0.0.0:1"])).code).toBe(2);
  }, 60_000);

  test("a trusted peer never dialed has no session: online by the registry's word, asked as soon as it is trusted", async () => {
    const auth = { authorization: `Bearer ${token}` };
    const state = async () => (await (await fetch(new URL("/api/state", address), { headers: auth })).json()) as any;
    const quiet = await c.startDaemon({ name: "quiet", hostname: "dash-quiet" });
    await c.trust("a", "quiet");
    let row: any;
    for (let i = 0; i < 80 && !(row?.online === true); i++) {
      row = (await state()).peers.find((p: any) => p.address === quiet.address);
      await Bun.sleep(250);
    }
    expect(row).toMatchObject({ hostname: "dash-quiet", online: true, session: false, path: "none" });
    expect(typeof row.last_seen).toBe("number");
  }, 60_000);

  test("the gateway's mappings (its own process, asked over its control socket) and exposed ports", async () => {
    const auth = { authorization: `Bearer ${token}` };
    const state = async () => (await (await fetch(new URL("/api/state", address), { headers: auth })).json()) as any;
    expect((await state()).gateway).toBeNull();
    const net = privateSubnet(81);
    const port = 20_000 + (process.pid % 20_000);
    const g = await gw(c.daemon("a").env, ["start", "--subnet", net.cidr, "--ports", String(port), "dash-beta"]);
    expect({ code: g.code, stderr: g.code === 0 ? "" : g.stderr }).toEqual({ code: 0, stderr: "" });
    const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
    try {
      expect((await c.pilot("a", ["expose", "8080", "--to", `127.0.0.1:${http.port}`])).code).toBe(0);
      let s: any;
      for (let i = 0; i < 60; i++) {
        s = await state();
        if (s.gateway?.mappings?.length && s.exposes?.length) break;
        await Bun.sleep(250);
      }
      expect(s.gateway).toMatchObject({ pid: g.json.data.pid, subnet: net.cidr, total: 1 });
      expect(s.gateway.mappings[0]).toMatchObject({ local_ip: net.ip(1), pilot_addr: c.daemon("b").address, hostname: "dash-beta", ports: [port] });
      expect(s.exposes[0]).toMatchObject({ port: 8080, target: `127.0.0.1:${http.port}`, active: true });
    } finally {
      http.stop(true);
    }
  }, 60_000);

  test.skipIf(!haveChromium && !isRoot)(
    "in headless Chromium: live values change as traffic runs, and the screenshot shows the node and its peer",
    async () => {
      if (!haveChromium) throw new Error("chromium is not installed; CI (root) must have it: apt-get install chromium");
      const b = c.daemon("b");
      // A tunnel first, so the peer's row has counters from the start.
      expect((await c.pilot("a", ["ping", b.address, "--count", "2", "--interval", "200ms"])).code).toBe(0);
      // A stranger's trust request whose reason is markup: the page must show it as text.
      await c.startDaemon({ name: "stranger" });
      const markup = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;
      expect((await c.pilot("stranger", ["handshake", String(c.daemon("a").nodeId), markup])).code).toBe(0);
      let browser: Browser | undefined;
      try {
        browser = await launchChromium();
        await browser.navigate(url);
        // The ?token= visit became a cookie and a clean address.
        expect(await browser.evaluate<string>("location.href")).toBe(address);
        await browser.waitFor(`document.body.dataset.ready === "true" && document.querySelector('#peers tr[data-address="${b.address}"]') !== null`);
        await browser.evaluate("window.__sameDocument = 1");
        const read = () => browser!.evaluate<{ sent: number; recv: number; generatedAt: number; nodeSent: string }>(
          `(() => { const tr = document.querySelector('#peers tr[data-address="${b.address}"]'); const l = document.getElementById("live");
             return { sent: Number(tr.dataset.bytesSent), recv: Number(tr.dataset.bytesRecv), generatedAt: Number(l.dataset.generatedAt), nodeSent: document.getElementById("node-sent").textContent }; })()`,
        );
        const before = await read();
        const bench = await c.pilot("a", ["bench", b.address, "1", "--no-baseline"], { timeoutMs: 60_000 });
        expect(bench.code).toBe(0);
        const after = await browser.waitFor<{ sent: number; recv: number; generatedAt: number }>(
          `(() => { const tr = document.querySelector('#peers tr[data-address="${b.address}"]'); const s = Number(tr.dataset.bytesSent);
             return s >= ${before.sent} + 1000000 ? { sent: s, recv: Number(tr.dataset.bytesRecv), generatedAt: Number(document.getElementById("live").dataset.generatedAt) } : null; })()`,
          20_000,
        );
        expect(after.sent).toBeGreaterThan(before.sent + 1_000_000);
        expect(after.recv).toBeGreaterThan(before.recv);
        expect(after.generatedAt).toBeGreaterThan(before.generatedAt);
        // Updated in place: the same document, no reload.
        expect(await browser.evaluate<number>("window.__sameDocument")).toBe(1);
        // Remote text stays text: the request's reason is on the page, and nothing in it ran.
        await browser.waitFor(`document.getElementById("pending").textContent.includes("onerror")`);
        expect(await browser.evaluate<string>(`document.getElementById("pending").textContent`)).toContain(markup);
        expect(await browser.evaluate<unknown>("window.__xss ?? null")).toBeNull();
        expect(await browser.evaluate<number>(`document.querySelectorAll("#pending img, #pending script, #events img").length`)).toBe(0);
        // The throughput plot has drawn (uPlot, served from the binary).
        await browser.waitFor(`document.querySelectorAll("#plot-throughput canvas, #plot-rtt canvas").length >= 2`);
        // An event about the peer is on the page (trust, or its tunnel coming up).
        expect(await browser.evaluate<string>(`document.getElementById("events").textContent`)).toContain(b.address);

        const png = await browser.screenshot();
        const size = pngSize(png);
        expect(size.width).toBeGreaterThanOrEqual(800);
        expect(size.height).toBeGreaterThanOrEqual(600);
        expect(png.length).toBeGreaterThan(20_000);
        const dom = await browser.evaluate<string>("document.documentElement.outerHTML");
        expect(dom).toContain(c.daemon("a").address);
        expect(dom).toContain("dash-alpha");
        expect(dom).toContain(`data-address="${b.address}"`);
        expect(dom).toContain("dash-beta");
        expect(dom).toContain("online");
        // The gateway's mapping of the peer, from the test before.
        expect(await browser.evaluate<string>(`document.getElementById("gateway").textContent`)).toContain(b.address);
        if (process.env.PILOT_DASHBOARD_SCREENSHOT) writeFileSync(process.env.PILOT_DASHBOARD_SCREENSHOT, png);
      } finally {
        await browser?.close();
      }
    },
    120_000,
  );
});
