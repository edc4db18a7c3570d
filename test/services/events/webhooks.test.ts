/**
 * Webhooks with a real daemon and a real HTTP receiver on 127.0.0.1 (started
 * here): every local event POSTed with a valid signature; retried after 500s
 * with the same delivery id; a receiver that stalls neither blocks the
 * daemon nor grows its queue past the bound (oldest dropped, counted). Also
 * the sender alone against the same kind of receiver (timeouts, redirects,
 * final statuses, stop), `pilot config --set webhook=…` and its secret file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Driver } from "../../../src/driver/index.ts";
import { EventBus } from "../../../src/daemon/event-bus.ts";
import { WebhookSender } from "../../../src/daemon/webhooks.ts";
import { verifyWebhookSignature } from "../../../src/shared/webhook-signature.ts";
import { createLogger } from "../../../src/util/log.ts";
import { runPilot, startCluster, type Cluster } from "../../support/cluster.ts";
import { waitFor } from "../../cli/helpers.ts";

interface Received {
  at: number;
  path: string;
  headers: Record<string, string>;
  body: string;
  json: any;
}

type Behaviour = (r: Received) => Response | Promise<Response>;

/** An HTTP receiver on 127.0.0.1 that records every request and answers as `behaviour` says. */
function startReceiver() {
  const received: Received[] = [];
  let behaviour: Behaviour = () => new Response("ok");
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = await req.text();
      let json: any;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      const r: Received = { at: performance.now(), path: new URL(req.url).pathname, headers: Object.fromEntries(req.headers), body, json };
      received.push(r);
      return behaviour(r);
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/hook`,
    received,
    set(b: Behaviour) {
      behaviour = b;
    },
    stop: () => server.stop(true),
  };
}

let c: Cluster;
let receiver: ReturnType<typeof startReceiver>;
const drivers: Driver[] = [];

beforeAll(async () => {
  receiver = startReceiver();
  // Short retry delays for this test's daemons (the default starts at 1 s).
  process.env.PILOT_WEBHOOK_BACKOFF_MS = "200";
  c = await startCluster({ daemons: [{ name: "w", hostname: "hook-w", extraArgs: ["--webhook", receiver.url] }, { name: "p", hostname: "hook-p" }] });
});

afterAll(async () => {
  delete process.env.PILOT_WEBHOOK_BACKOFF_MS;
  for (const d of drivers) await d.close();
  await c?.stop();
  receiver?.stop();
});

async function sdk(name: string): Promise<Driver> {
  const d = await connect({ home: c.daemon(name).home });
  drivers.push(d);
  return d;
}

async function webhookStatus(d: Driver): Promise<any> {
  return ((await d.call("events_status")) as { webhook: unknown }).webhook;
}

const secretOf = (name: string) => readFileSync(join(c.daemon(name).home, "webhook_secret"), "utf8").trim();

describe("a daemon with a webhook", () => {
  test("POSTs a trust request as signed JSON; the secret file is 0600", async () => {
    const W = c.daemon("w");
    const P = c.daemon("p");
    expect(statSync(join(W.home, "webhook_secret")).mode & 0o777).toBe(0o600);
    const secret = secretOf("w");
    expect(secret).toMatch(/^[0-9a-f]{64}$/);

    expect((await c.pilot("p", ["handshake", W.address, "webhook test"])).code).toBe(0);
    const hit = await waitFor("the POST", async () => receiver.received.find((r) => r.json?.type === "trust.request"));
    expect(hit.path).toBe("/hook");
    expect(hit.headers["content-type"]).toBe("application/json");
    expect(hit.headers["user-agent"]).toMatch(/^pilot\//);
    expect(hit.json).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{16}-[0-9]+$/),
      node: W.address,
      seq: expect.any(Number),
      time: expect.any(Number),
      type: "trust.request",
      data: { address: P.address, node_id: P.nodeId, reason: "webhook test" },
    });
    expect(hit.headers["x-pilot-event"]).toBe("trust.request");
    expect(hit.headers["x-pilot-delivery"]).toBe(hit.json.id);
    expect(hit.headers["x-pilot-attempt"]).toBe("1");
    const now = Math.floor(Date.now() / 1000);
    const check = verifyWebhookSignature(secret, hit.headers["x-pilot-signature"], hit.body, now);
    expect(check).toEqual({ ok: true, timestamp: Number(hit.headers["x-pilot-timestamp"]) });
    expect(Math.abs(now - Number(hit.headers["x-pilot-timestamp"]))).toBeLessThan(30);
    // The signature covers the body and the time: any change fails.
    expect(verifyWebhookSignature(secret, hit.headers["x-pilot-signature"], hit.body.replace("webhook test", "webhook TEST"), now)).toEqual({ ok: false, reason: "mismatch" });
    expect(verifyWebhookSignature("another secret", hit.headers["x-pilot-signature"], hit.body, now)).toEqual({ ok: false, reason: "mismatch" });
    expect(verifyWebhookSignature(secret, hit.headers["x-pilot-signature"], hit.body, now + 3600)).toEqual({ ok: false, reason: "stale" });
    const forged = hit.headers["x-pilot-signature"]!.replace(/t=\d+/, `t=${now + 1}`);
    expect(verifyWebhookSignature(secret, forged, hit.body, now)).toEqual({ ok: false, reason: "mismatch" });

    const w = await sdk("w");
    const status = await webhookStatus(w);
    expect([status.url, status.failed, status.dropped]).toEqual([receiver.url, 0, 0]);
    expect(status.delivered).toBeGreaterThanOrEqual(1);
    const text = await c.pilot("w", ["events"], { json: false });
    expect(text.stdout).toContain(`webhook ${receiver.url}: `);
    await c.pilot("w", ["reject", String(P.nodeId)]);
  }, 30_000);

  test("a 500 is retried with backoff under the same delivery id until a 2xx", async () => {
    const w = await sdk("w");
    let failures = 2;
    receiver.set((r) => (r.json?.type === "app.retry" && failures-- > 0 ? new Response("busy", { status: 500 }) : new Response("ok")));
    const before = await webhookStatus(w);
    const { seq } = await w.publishEvent("app.retry", { n: 1 });
    const attempts = await waitFor("three attempts", async () => {
      const hits = receiver.received.filter((r) => r.json?.seq === seq && r.json?.type === "app.retry");
      return hits.length >= 3 && hits;
    });
    expect(attempts.map((r) => r.headers["x-pilot-attempt"])).toEqual(["1", "2", "3"]);
    expect(new Set(attempts.map((r) => r.headers["x-pilot-delivery"])).size).toBe(1);
    // Backoff 200 ms, then 400 ms (each -20 %..+20 %); every attempt signed afresh.
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(150);
    expect(attempts[2]!.at - attempts[1]!.at).toBeGreaterThanOrEqual(300);
    for (const a of attempts) expect(verifyWebhookSignature(secretOf("w"), a.headers["x-pilot-signature"], a.body, Math.floor(Date.now() / 1000)).ok).toBe(true);
    const after = await waitFor("delivered", async () => {
      const s = await webhookStatus(w);
      return s.delivered > before.delivered && s;
    });
    expect(after.retries - before.retries).toBe(2);
    expect(after.failed).toBe(before.failed);
    expect(after.last_status).toBe(200);
    receiver.set(() => new Response("ok"));
  }, 30_000);

  test("a receiver that stalls blocks nothing: the queue stops at 1000, the oldest dropped and counted", async () => {
    const w = await sdk("w");
    const held: (() => void)[] = [];
    receiver.set(() => new Promise<Response>((resolve) => held.push(() => resolve(new Response("ok")))));
    const before = await webhookStatus(w);
    const first = await w.publishEvent("app.flood", { n: -1 });
    await waitFor("the first POST to hang", async () => held.length === 1);
    const TOTAL = 1500;
    const seqs: number[] = [first.seq];
    for (let i = 0; i < TOTAL; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, k) => w.publishEvent("app.flood", { n: i + k })));
      seqs.push(...batch.map((b) => b.seq));
    }
    // The daemon answers as ever while the receiver hangs.
    const started = performance.now();
    const info = await c.pilot("w", ["info"]);
    expect(info.code).toBe(0);
    expect(performance.now() - started).toBeLessThan(5000);
    const stuck = await webhookStatus(w);
    expect(stuck.queued).toBe(1000);
    expect(stuck.in_flight).toBe(true);
    expect(stuck.dropped - before.dropped).toBe(TOTAL - 1000);

    // Released: the hung POST, then the newest 1000, in order.
    receiver.set(() => new Response("ok"));
    for (const release of held) release();
    await waitFor("the queue to drain", async () => {
      const s = await webhookStatus(w);
      return s.queued === 0 && !s.in_flight && s.delivered >= before.delivered + 1001;
    }, 30_000);
    const delivered = receiver.received.filter((r) => r.json?.type === "app.flood").map((r) => r.json.seq as number);
    expect(delivered).toEqual([first.seq, ...seqs.slice(-1000)]);
  }, 60_000);
});

describe("the sender alone", () => {
  const log = createLogger("webhook", { level: "error", sink: () => {} });

  test("a POST that gets no answer times out and is retried; 3xx and 4xx are final; stop() aborts", async () => {
    const r = startReceiver();
    try {
      const bus = new EventBus();
      const sender = new WebhookSender({ url: r.url, secret: "s".repeat(32), node: "0:0000.0000.0001", boot: "b", log, timeoutMs: 200, backoffMs: 50, maxAttempts: 3 });
      bus.subscribe((e) => sender.enqueue(e));
      let hangs = 1;
      r.set((x) => {
        if (x.json.type === "app.hang" && hangs-- > 0) return new Promise<Response>(() => {});
        if (x.json.type === "app.moved") return new Response("", { status: 302, headers: { location: "http://127.0.0.1:9/elsewhere" } });
        if (x.json.type === "app.bad") return new Response("no", { status: 400 });
        if (x.json.type === "app.down") return new Response("down", { status: 503 });
        return new Response("ok");
      });
      bus.publish("app.hang", {});
      bus.publish("app.moved", {});
      bus.publish("app.bad", {});
      bus.publish("app.down", {});
      bus.publish("app.fine", {});
      await waitFor("the last event", async () => sender.stats().delivered === 2);
      const types = r.received.map((x) => x.json.type);
      expect(types).toEqual(["app.hang", "app.hang", "app.moved", "app.bad", "app.down", "app.down", "app.down", "app.fine"]);
      const s = sender.stats();
      expect(s).toMatchObject({ delivered: 2, failed: 3, dropped: 0, retries: 3, queued: 0 });

      // stop(): the hung POST is aborted and nothing more is sent.
      r.set(() => new Promise<Response>(() => {}));
      bus.publish("app.last", {});
      bus.publish("app.never", {});
      await waitFor("the hung POST", async () => r.received.some((x) => x.json.type === "app.last"));
      sender.stop();
      await Bun.sleep(300);
      expect(r.received.filter((x) => x.json.type === "app.last").length).toBe(1);
      expect(r.received.some((x) => x.json.type === "app.never")).toBe(false);
      bus.publish("app.after", {});
      expect(sender.stats().queued).toBe(0);
    } finally {
      r.stop();
    }
  });

  test("the queue is bounded in bytes too, and redacts credentials in what it shows", async () => {
    const bus = new EventBus();
    const sender = new WebhookSender({ url: "http://user:pw@127.0.0.1:9/hook", secret: "s".repeat(32), node: "0:0000.0000.0001", boot: "b", log, queueLimit: 1000, queueBytes: 64 * 1024, timeoutMs: 5000 });
    for (let i = 0; i < 100; i++) sender.enqueue(bus.publish("app.big", { pad: "x".repeat(4000) }));
    const s = sender.stats();
    expect(s.url).toBe("http://***@127.0.0.1:9/hook");
    expect(s.queued_bytes).toBeLessThanOrEqual(64 * 1024);
    expect(s.queued + s.dropped + (s.in_flight ? 1 : 0)).toBe(100);
    expect(s.dropped).toBeGreaterThan(80);
    sender.stop();
  });
});

describe("pilot config --set webhook", () => {
  test("checks the URL, creates the secret file (0600) and says how to read it; the secret is never shown", async () => {
    const home = mkdtempSync(join(tmpdir(), "pilot-webhook-config-"));
    const env = { PILOT_HOME: home };
    try {
      const set = await runPilot(["config", "--set", "webhook=https://hooks.example.com/pilot"], { env });
      expect(set.code).toBe(0);
      const file = join(home, "webhook_secret");
      expect(set.stdout).toContain(`cat ${file}`);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const secret = readFileSync(file, "utf8").trim();
      expect(secret).toMatch(/^[0-9a-f]{64}$/);
      // Setting it again keeps the same secret.
      const again = await runPilot(["config", "--set", "webhook=https://hooks.example.com/other", "--json"], { env });
      expect(again.json.data.webhook_secret_file).toBe(file);
      expect(readFileSync(file, "utf8").trim()).toBe(secret);

      const own = await runPilot(["config", "--set", "webhook_secret=0123456789abcdef-mine", "--json"], { env });
      expect(own.code).toBe(0);
      expect(own.json.data.config.webhook_secret).toBe("(hidden)");
      expect(own.json.data.set.webhook_secret).toBe("(hidden)");
      const shown = await runPilot(["config"], { env });
      expect(shown.stdout).not.toContain("0123456789abcdef-mine");
      expect(readFileSync(join(home, "config.json"), "utf8")).toContain("0123456789abcdef-mine");

      const bad = await runPilot(["config", "--set", "webhook=file:///etc/passwd", "--json"], { env });
      expect(bad.code).toBe(2);
      expect(bad.json.message).toContain("http:// or https://");
      const badStart = await runPilot(["daemon", "start", "--webhook", "gopher://x", "--json"], { env });
      expect(badStart.code).toBe(2);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
