/**
 * DashboardState on its own: which daemon calls it makes when (an unwatched
 * daemon must not ask the registry every second), how it turns byte counters
 * into rates, and how far its history and its list of plotted peers grow.
 */
import { describe, expect, test } from "bun:test";
import { DashboardState, type DashboardSource } from "../../src/daemon/dashboard/state.ts";
import { EventBus } from "../../src/daemon/event-bus.ts";

class FakeDaemon implements DashboardSource {
  readonly events = new EventBus();
  readonly calls: string[] = [];
  sent = 0;
  recv = 0;
  peers: Record<string, unknown>[] = [];
  failing = new Set<string>();
  off = new Set<string>(["pubsub_status"]);
  lookupAnswer: Record<string, unknown> | null = null;

  async call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    this.calls.push(method === "lookup" ? `lookup ${params.target}` : method);
    if (this.failing.has(method)) throw new Error("registry away");
    if (this.off.has(method)) throw new Error(`unknown method "${method}"`);
    switch (method) {
      case "info":
        return { address: "0:0000.0000.0004", bytes_sent: this.sent, bytes_recv: this.recv };
      case "peers":
        return { peers: this.peers };
      case "trusted":
        return { trusted: [{ node_id: 5, address: "0:0000.0000.0005", hostname: "b", connected: false, since: 1 }, { node_id: 6, address: "0:0000.0000.0006", hostname: "", connected: false }] };
      case "pending":
        return { pending: [{ node_id: 9, address: "0:0000.0000.0009", hostname: "x", reason: "hi", received_at: 1 }], outgoing: [] };
      case "expose_list":
        return { exposes: [{ port: 8080 }], total: 1 };
      case "inbox_list":
        return { messages: [], total: 3, unread: 2, bytes: 30 };
      case "outbox_list":
        return { messages: [], queued: 1, failed: 0 };
      case "files_received":
        return { files: [], total: 0, bytes: 0, partial: 0 };
      case "file_transfers":
        return { transfers: [] };
      case "task_queue":
        return { queue: [], count: 0, queued: 0, accepted: 0, running: 0, limit: 256 };
      case "lookup":
        if (this.lookupAnswer) return this.lookupAnswer;
        break;
    }
    throw new Error(`unexpected ${method}`);
  }

  count(method: string): number {
    return this.calls.filter((m) => m === method).length;
  }
}

function setup(options: { historyLength?: number; plottedPeers?: number } = {}) {
  const d = new FakeDaemon();
  let now = 1_000_000;
  const s = new DashboardState(d, { ...options, clock: () => now });
  return { d, s, advance: (ms: number) => (now += ms) };
}

describe("DashboardState", () => {
  test("unwatched: info every sample, peers every tenth, nothing else", async () => {
    const { d, s, advance } = setup();
    for (let i = 0; i < 30; i++) {
      await s.sample();
      advance(1000);
    }
    expect(d.count("info")).toBe(30);
    expect(d.count("peers")).toBe(3);
    for (const m of ["trusted", "pending", "expose_list", "inbox_list", "task_queue"]) expect(d.count(m)).toBe(0);
  });

  test("watched: peers every sample, trust and services every few seconds, then idle again", async () => {
    const { d, s, advance } = setup();
    await s.snapshot();
    const before = { peers: d.count("peers"), trusted: d.count("trusted") };
    for (let i = 0; i < 10; i++) {
      advance(1000);
      await s.sample();
    }
    await Bun.sleep(0);
    expect(d.count("peers") - before.peers).toBe(10);
    expect(d.count("trusted") - before.trusted).toBeGreaterThanOrEqual(2);
    expect(d.count("trusted") - before.trusted).toBeLessThanOrEqual(4);
    // Nobody has asked for 15 s: back to the idle rate.
    advance(15_000);
    const idle = d.count("peers");
    for (let i = 0; i < 10; i++) {
      advance(1000);
      await s.sample();
    }
    expect(d.count("peers") - idle).toBeLessThanOrEqual(1);
  });

  test("the snapshot joins trust with the tunnel, and keeps a call's failure for the page", async () => {
    const { d, s } = setup();
    d.peers = [
      { address: "0:0000.0000.0005", hostname: "b", established: true, path: "punched", endpoint: "198.51.100.7:4000", rtt_ms: 12.5, bytes_sent: 100, bytes_recv: 200 },
      { address: "0:0000.0000.0042", established: true, path: "direct", rtt_ms: 1, bytes_sent: 1, bytes_recv: 1 },
    ];
    const snap = await s.snapshot();
    expect(snap.node?.address).toBe("0:0000.0000.0004");
    expect(snap.peers).toEqual([
      { node_id: 5, address: "0:0000.0000.0005", hostname: "b", online: true, session: true, last_seen: null, path: "punched", endpoint: "198.51.100.7:4000", rtt_ms: 12.5, bytes_sent: 100, bytes_recv: 200, since: 1 },
      // No session, and the registry not asked yet (or not answering): unknown.
      { node_id: 6, address: "0:0000.0000.0006", hostname: null, online: null, session: false, last_seen: null, path: "none", endpoint: null, rtt_ms: null, bytes_sent: 0, bytes_recv: 0, since: null },
    ]);
    expect(snap.peers_total).toBe(2);
    expect(snap.other_tunnel_peers).toBe(1);
    expect(snap.pending.map((p) => p.address)).toEqual(["0:0000.0000.0009"]);
    expect(snap.exposes).toEqual([{ port: 8080 }]);
    expect(snap.services.messages).toEqual({ inbox: 3, unread: 2, inbox_bytes: 30, outbox_queued: 1, outbox_failed: 0 });
    expect(snap.services.tasks?.limit).toBe(256);
    // A service that is off is null, and not an error.
    expect(snap.services.pubsub).toBeNull();
    expect(snap.errors).toEqual([]);

    d.failing.add("peers");
    await s.sample();
    const again = await s.snapshot();
    expect(again.errors).toEqual(["peers: registry away"]);
    // The last good answer is still shown.
    expect(again.peers[0]!.online).toBe(true);
  });

  test("peers without a session: the registry's online state, asked for them only, every 30 s", async () => {
    const { d, s, advance } = setup();
    d.peers = [{ address: "0:0000.0000.0005", established: true, path: "direct" }];
    d.lookupAnswer = { online: false, last_seen: 1234 };
    await s.snapshot();
    await Bun.sleep(0);
    let snap = await s.snapshot();
    expect(snap.peers.map((p) => [p.address, p.online, p.last_seen])).toEqual([
      ["0:0000.0000.0005", true, null],
      ["0:0000.0000.0006", false, 1234],
    ]);
    expect(d.calls.filter((m) => m.startsWith("lookup"))).toEqual(["lookup 0:0000.0000.0006"]);
    for (let i = 0; i < 20; i++) {
      advance(1000);
      await s.snapshot();
      await Bun.sleep(0);
    }
    expect(d.calls.filter((m) => m.startsWith("lookup")).length).toBe(1);
    d.lookupAnswer = { online: true, last_seen: 5678 };
    advance(12_000);
    await s.snapshot();
    await Bun.sleep(0);
    snap = await s.snapshot();
    expect(d.calls.filter((m) => m.startsWith("lookup")).length).toBe(2);
    expect(snap.peers[1]).toMatchObject({ online: true, session: false, last_seen: 5678 });
  });

  test("rates from the byte counters, never negative; history and plotted peers are bounded", async () => {
    const { d, s, advance } = setup({ historyLength: 5, plottedPeers: 2 });
    d.peers = [1, 2, 3].map((n) => ({ address: `0:0000.0000.000${n}`, rtt_ms: n, established: true }));
    await s.snapshot();
    d.sent = 2048;
    d.recv = 1024;
    advance(2000);
    await s.sample();
    // A peer went away and took its counters with it.
    d.sent = 0;
    advance(1000);
    await s.sample();
    let h = (await s.snapshot()).history;
    expect(h.tx.slice(-2)).toEqual([1024, 0]);
    expect(h.rx.slice(-2)).toEqual([512, 0]);
    expect(h.rtt.map((r) => r.address)).toEqual(["0:0000.0000.0001", "0:0000.0000.0002"]);
    for (let i = 0; i < 10; i++) {
      advance(1000);
      await s.sample();
    }
    h = (await s.snapshot()).history;
    expect(h.t.length).toBe(5);
    expect(h.tx.length).toBe(5);
    for (const r of h.rtt) expect(r.values.length).toBe(5);
  });

  test("the gateway's status when one runs, cut to what the page shows; null when none does", async () => {
    const d = new FakeDaemon();
    let status: Record<string, unknown> | null = { pid: 77, subnet: "10.4.0.0/16", control_version: 2, mappings: [{ local_ip: "10.4.0.1", pilot_addr: "0:0000.0000.0005", hostname: "b", ports: [80, 443], secure_ports: [443], connections: 2, bytes_up: 10, bytes_down: 20, mapped_at: "x" }] };
    const s = new DashboardState(Object.assign(d, { gateway: async () => status }));
    expect((await s.snapshot()).gateway).toEqual({ pid: 77, subnet: "10.4.0.0/16", total: 1, mappings: [{ local_ip: "10.4.0.1", pilot_addr: "0:0000.0000.0005", hostname: "b", ports: [80, 443], secure_ports: [443], connections: 2, bytes_up: 10, bytes_down: 20 }] });
    status = null;
    const fresh = new DashboardState(Object.assign(new FakeDaemon(), { gateway: async () => status }));
    expect((await fresh.snapshot()).gateway).toBeNull();
  });

  test("events: newest first, their data cut to a line", async () => {
    const { d, s } = setup();
    d.events.publish("trust.request", { address: "0:0000.0000.0009", reason: "x".repeat(1000) });
    d.events.publish("peer.online", { address: "0:0000.0000.0005" });
    const snap = await s.snapshot();
    expect(snap.events.map((e) => e.type)).toEqual(["peer.online", "trust.request"]);
    expect(snap.events[1]!.text.length).toBeLessThanOrEqual(240);
  });
});
