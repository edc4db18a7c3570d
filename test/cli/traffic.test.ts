/**
 * Traffic between two trusted daemons through the CLI: ping (every target
 * form), traceroute, bench, connect/recv, send/listen (bounded and
 * streaming), peers, connections and disconnect.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { killAll, startPilot, waitFor, waitForListener } from "./helpers.ts";

let c: Cluster;
let a: { address: string; nodeId: number };

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "traffic-a" }, { name: "b", hostname: "traffic-b" }] });
  await c.trust("a", "b");
  a = c.daemon("a");
});

afterAll(async () => {
  killAll();
  await c?.stop();
});

describe("ping", () => {
  test("by hostname: per-probe results, a summary, and the first probe marked as including the tunnel handshake", async () => {
    const r = await c.pilot("b", ["ping", "traffic-a", "--count", "3", "--interval", "0"]);
    expect(r.code).toBe(0);
    const d = r.json.data;
    expect(d.target).toBe(a.address);
    expect(d.node_id).toBe(a.nodeId);
    expect(d.sent).toBe(3);
    expect(d.received).toBe(3);
    expect(d.loss_pct).toBe(0);
    expect(d.results.map((x: any) => x.seq)).toEqual([0, 1, 2]);
    for (const x of d.results) {
      expect(x.rtt_ms).toBeGreaterThan(0);
      expect(x.bytes).toBe(0);
    }
    expect(d.results[0].handshake).toBe(true);
    expect(d.results[1].handshake).toBeUndefined();
    expect(d.min_ms).toBeLessThanOrEqual(d.avg_ms);
    expect(d.avg_ms).toBeLessThanOrEqual(d.max_ms);
  });

  test("by node id and by full address, with a payload; text output for people", async () => {
    const byId = await c.pilot("b", ["ping", String(a.nodeId), "--count", "2", "--interval", "10ms", "--size", "512"]);
    expect(byId.code).toBe(0);
    expect(byId.json.data.target).toBe(a.address);
    expect(byId.json.data.results[0].bytes).toBe(512);
    expect(byId.json.data.results[0].handshake).toBeUndefined(); // the tunnel is up already
    const byAddress = await c.pilot("b", ["ping", a.address, "--count", "1"]);
    expect(byAddress.json.data.target).toBe(a.address);
    const text = await c.pilot("b", ["ping", "traffic-a", "--count", "2", "--interval", "0"], { json: false });
    expect(text.code).toBe(0);
    const lines = text.stdout.trim().split("\n");
    expect(lines[0]).toBe(`PING traffic-a (${a.address}): 2 probes of 0 bytes over the encrypted tunnel`);
    expect(lines[1]).toMatch(/^seq=0 bytes=0 time=[0-9.]+ ms path=direct$/);
    expect(lines[3]).toMatch(/^--- traffic-a: 2 sent, 2 received, 0% loss; round trip min\/avg\/max /);
  });

  test("Ctrl-C ends a long ping early with the summary so far", async () => {
    const ping = startPilot(c, "b", ["ping", "traffic-a", "--count", "100", "--interval", "50ms"]);
    expect(await ping.nextLine()).toStartWith("PING traffic-a");
    expect(await ping.nextLine()).toStartWith("seq=0 ");
    ping.proc.kill("SIGINT");
    expect(await ping.exited()).toBe(0);
    let last = "";
    for (;;) {
      const line = await ping.nextLine().catch(() => null);
      if (line === null) break;
      last = line;
    }
    expect(last).toMatch(/^--- traffic-a: \d+ sent, \d+ received, 0% loss/);
  });

  test("pinging yourself works, as on TCP/IP: loopback inside the daemon, no tunnel (by hostname, address and id)", async () => {
    for (const target of ["traffic-a", a.address, String(a.nodeId)]) {
      const r = await c.pilot("a", ["ping", target, "--count", "2", "--interval", "0"]);
      expect({ target, code: r.code }).toEqual({ target, code: 0 });
      expect(r.json.data).toMatchObject({ target: a.address, sent: 2, received: 2, loss_pct: 0 });
      for (const x of r.json.data.results) {
        expect(x.path).toBe("self");
        expect(x.handshake).toBeUndefined();
      }
    }
    const text = await c.pilot("a", ["ping", a.address, "--count", "1"], { json: false });
    expect(text.code).toBe(0);
    expect(text.stdout).toStartWith(`PING ${a.address}: 1 probe of 0 bytes to this node itself (loopback, no tunnel)\nseq=0 bytes=0 time=`);
    // No tunnel session with ourselves was made.
    const peers = await c.pilot("a", ["peers"]);
    expect(peers.json.data.peers.map((p: any) => p.node_id)).not.toContain(a.nodeId);
  });
});

describe("traceroute and bench", () => {
  test("traceroute shows the direct hop, set-up time and round trips", async () => {
    const r = await c.pilot("b", ["traceroute", "traffic-a", "--samples", "2"]);
    expect(r.code).toBe(0);
    const d = r.json.data;
    expect(d.target).toBe(a.address);
    expect(d.hops).toHaveLength(1);
    expect(d.hops[0]).toMatchObject({ hop: 1, node_id: a.nodeId, address: a.address, hostname: "traffic-a", path: "direct" });
    expect(d.hops[0].endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(d.setup_ms).toBeGreaterThan(0);
    expect(typeof d.handshake).toBe("boolean");
    expect(d.rtt_samples).toHaveLength(2);
    expect(d.rtt_samples[0]).toEqual({ rtt_ms: expect.any(Number), bytes: "trace-0".length });
  });

  test("bench sends, gets back and verifies every byte", async () => {
    const r = await c.pilot("b", ["bench", String(a.nodeId), "2"]);
    expect(r.code).toBe(0);
    const d = r.json.data;
    expect(d).toMatchObject({ target: a.address, node_id: a.nodeId, size_bytes: 2_000_000, sent_bytes: 2_000_000, recv_bytes: 2_000_000, verified: true });
    for (const k of ["setup_ms", "send_duration_ms", "total_duration_ms", "send_mbps", "total_mbps"]) expect(d[k]).toBeGreaterThan(0);
    expect(d.total_duration_ms).toBeGreaterThanOrEqual(d.send_duration_ms);
    // Beside loopback TCP and raw UDP, measured in the same run.
    for (const k of ["tcp_loopback_mbps", "udp_loopback_mbps", "pilot_vs_tcp", "pilot_vs_udp"]) expect(d.baseline[k]).toBeGreaterThan(0);
  });

  test("bench --no-baseline skips the loopback measurements", async () => {
    const r = await c.pilot("b", ["bench", "traffic-a", "0.1", "--no-baseline"]);
    expect(r.code).toBe(0);
    expect(r.json.data.baseline).toBeUndefined();
  });

  test("bench with a fractional size, in text", async () => {
    const r = await c.pilot("b", ["bench", "traffic-a", "0.05"], { json: false });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("every byte verified");
    expect(r.stdout).toContain("0.05 MB");
    expect(r.stdout).toContain("raw UDP");
  });
});

describe("streams: connect and recv", () => {
  test("recv --count collects messages sent with connect --message, exactly as typed", async () => {
    const recv = startPilot(c, "a", ["recv", "1000", "--count", "2", "--json"]);
    await waitForListener(c, "a", 1000);
    const one = await c.pilot("b", ["connect", "traffic-a", "1000", "--message", "007"]);
    expect(one.code).toBe(0);
    expect(one.json.data).toEqual({ target: a.address, port: 1000, sent: 3, received: 0, response: "" });
    const two = await c.pilot("b", ["connect", String(a.nodeId), "--message", "hello there"]); // port 1000 is the default
    expect(two.code).toBe(0);
    const out = JSON.parse(await recv.nextLine());
    expect(await recv.exited()).toBe(0);
    expect(out.status).toBe("ok");
    expect(out.data.port).toBe(1000);
    expect(out.data.timeout).toBe(false);
    expect(out.data.messages).toEqual([
      { seq: 0, port: 1000, src_addr: c.daemon("b").address, src_port: expect.any(Number), data: "007", bytes: 3 },
      { seq: 1, port: 1000, src_addr: c.daemon("b").address, src_port: expect.any(Number), data: "hello there", bytes: 11 },
    ]);
  });

  test("recv without --count prints one envelope per message as it arrives", async () => {
    const recv = startPilot(c, "a", ["recv", "2101", "--json"]);
    await waitForListener(c, "a", 2101);
    for (const text of ["first", "second"]) {
      expect((await c.pilot("b", ["connect", "traffic-a", "2101", "--message", text])).code).toBe(0);
      const line = JSON.parse(await recv.nextLine());
      expect(line).toEqual({ status: "ok", data: { seq: expect.any(Number), port: 2101, src_addr: c.daemon("b").address, src_port: expect.any(Number), data: text, bytes: text.length } });
    }
    recv.proc.kill("SIGINT");
    await recv.exited();
  });

  test("recv --timeout ends the wait and says so", async () => {
    const r = await c.pilot("a", ["recv", "2102", "--count", "1", "--timeout", "200ms"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ port: 2102, messages: [], timeout: true });
  });

  test("connect --json without --message sends stdin as the message", async () => {
    const recv = startPilot(c, "a", ["recv", "1004", "--count", "1", "--json"]);
    await waitForListener(c, "a", 1004);
    const r = await c.pilot("b", ["connect", "traffic-a", "1004"], { input: "from stdin\n" });
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({ target: a.address, port: 1004, sent: 11 });
    expect(JSON.parse(await recv.nextLine()).data.messages[0].data).toBe("from stdin\n");
  });

  // Known daemon bug (src/daemon/stream.ts, not the CLI): when the reply and the
  // peer's FIN arrive after our own FIN was acknowledged, the stream enters
  // TIME-WAIT and reports "closed" to its owner before the reply was read, so
  // the reply is dropped. Remove `.failing` once fixed.
  test("connect --message prints the reply of a server that answers (echo, port 7)", async () => {
    const r = await c.pilot("b", ["connect", "traffic-a", "7", "--message", "echo me", "--timeout", "5s"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ target: a.address, port: 7, sent: 7, received: 7, response: "echo me" });
  });

  test("connect pipes stdin and stdout like netcat", async () => {
    const nc = startPilot(c, "b", ["connect", "traffic-a", "7"]);
    nc.write("line one\n");
    expect(await nc.nextLine()).toBe("line one");
    nc.write("line two\n");
    expect(await nc.nextLine()).toBe("line two");
    nc.closeStdin();
    expect(await nc.exited()).toBe(0);
  });

  test("connect to this node itself (loopback): its echo port answers; recv gets a message from itself; a closed port refuses", async () => {
    const echo = await c.pilot("a", ["connect", "traffic-a", "7", "--message", "me, myself", "--timeout", "5s"]);
    expect(echo.code).toBe(0);
    expect(echo.json.data).toEqual({ target: a.address, port: 7, sent: 10, received: 10, response: "me, myself" });
    const byAddress = await c.pilot("a", ["connect", a.address, "7", "--message", "again"]);
    expect(byAddress.json.data.response).toBe("again");

    const recv = startPilot(c, "a", ["recv", "1005", "--count", "1", "--json"]);
    await waitForListener(c, "a", 1005);
    const sent = await c.pilot("a", ["connect", String(a.nodeId), "1005", "--message", "note to self"]);
    expect(sent.code).toBe(0);
    const got = JSON.parse(await recv.nextLine()).data.messages[0];
    expect(got).toMatchObject({ src_addr: a.address, data: "note to self" });
    expect(await recv.exited()).toBe(0);

    const refused = await c.pilot("a", ["connect", "traffic-a", "4998", "--message", "x"]);
    expect(refused.code).toBe(1);
    expect(refused.json.code).toBe("connection_refused");
  });

  test("connect to a port nobody listens on: connection_refused with a hint", async () => {
    const r = await c.pilot("b", ["connect", "traffic-a", "4999", "--message", "x"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("connection_refused");
    expect(r.json.hint).toContain("pilot recv 4999");
  });

  test("recv on a port in use: port_in_use", async () => {
    const recv = startPilot(c, "a", ["recv", "2003"]);
    await waitForListener(c, "a", 2003);
    const r = await c.pilot("a", ["recv", "2003", "--count", "1"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("port_in_use");
    recv.proc.kill("SIGINT");
    await recv.exited();
  });
});

describe("datagrams: send and listen", () => {
  /** Sends until the listener shows it got something (datagrams to a port not yet bound are dropped). */
  async function sendUntilHeard(data: string, listener: ReturnType<typeof startPilot>, port: number): Promise<any> {
    const got = listener.nextLine(10_000);
    let heard = false;
    void got.then(() => (heard = true), () => (heard = true));
    while (!heard) {
      const r = await c.pilot("b", ["send", "traffic-a", String(port), "--data", data]);
      expect(r.code).toBe(0);
      expect(r.json.data).toEqual({ target: a.address, port, bytes: Buffer.byteLength(data) });
      await Promise.race([got, Bun.sleep(200)]);
    }
    return JSON.parse(await got);
  }

  test("listen without --count streams one envelope per datagram", async () => {
    const listen = startPilot(c, "a", ["listen", "2000", "--json"]);
    const first = await sendUntilHeard("007", listen, 2000);
    expect(first).toEqual({ status: "ok", data: { seq: 0, port: 2000, src_addr: c.daemon("b").address, src_port: expect.any(Number), data: "007", bytes: 3 } });
    expect((await c.pilot("b", ["send", String(a.nodeId), "2000", "--data", "second"])).code).toBe(0);
    const second = JSON.parse(await listen.nextLine());
    expect(second.data).toMatchObject({ seq: 1, data: "second" });
    listen.proc.kill("SIGINT");
    await listen.exited();
  });

  test("listen --count collects datagrams into one result; text shows the sender", async () => {
    const listen = startPilot(c, "a", ["listen", "2001", "--count", "2"]);
    const heard = listen.nextLine(10_000);
    let done = false;
    void heard.then(() => (done = true), () => (done = true));
    let n = 0;
    while (!done) {
      await c.pilot("b", ["send", a.address, "2001", "--data", `datagram ${n++}`]);
      await Promise.race([heard, Bun.sleep(100)]);
    }
    expect(await heard).toMatch(new RegExp(`^\\[${c.daemon("b").address} port \\d+\\] datagram \\d+$`));
    expect(await listen.exited()).toBe(0);
  });

  test("send to an unknown node: not_found with a hint", async () => {
    const r = await c.pilot("b", ["send", "no-such-node", "2002", "--data", "x"]);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("not_found");
    expect(r.json.hint).toContain("pilot handshake");
  });

  test("send refuses an oversized datagram", async () => {
    const r = await c.pilot("b", ["send", "traffic-a", "2002", "--data", "x".repeat(5000)]);
    expect(r.code).toBe(2);
    expect(r.json.code).toBe("invalid_argument");
  });
});

describe("peers, connections, disconnect", () => {
  test("peers lists the tunnel to the other daemon", async () => {
    expect((await c.pilot("b", ["ping", "traffic-a", "--count", "1"])).code).toBe(0);
    const r = await c.pilot("b", ["peers"]);
    expect(r.code).toBe(0);
    const peer = r.json.data.peers.find((p: any) => p.node_id === a.nodeId);
    expect(peer).toMatchObject({ address: a.address, hostname: "traffic-a", path: "direct", encrypted: true, authenticated: true, trusted: true });
    expect(r.json.data.total).toBe(r.json.data.peers.length);
    const text = await c.pilot("b", ["peers"], { json: false });
    expect(text.stdout).toMatch(/^NODE\s+ADDRESS\s+HOSTNAME\s+PATH/);
  });

  test("connections shows a live stream; disconnect resets it and the connect session ends with an error", async () => {
    const nc = startPilot(c, "b", ["connect", "traffic-a", "7"]);
    nc.write("hold\n");
    expect(await nc.nextLine()).toBe("hold");
    const conn = await waitFor("the stream in connections", async () => {
      const r = await c.pilot("b", ["connections"]);
      return r.json.data.connections.find((x: any) => x.remote_port === 7 && x.state === "established");
    });
    expect(conn).toMatchObject({ remote_addr: a.address, origin: "dialed", local_port: expect.any(Number), bytes_sent: 5 });
    const r = await c.pilot("b", ["disconnect", String(conn.id)]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ id: conn.id, closed: true });
    expect(await nc.exited()).toBe(1);
    expect(await nc.stderr()).toContain("error:");
    const again = await c.pilot("b", ["disconnect", String(conn.id)]);
    expect(again.code).toBe(1);
    expect(again.json.code).toBe("not_found");
  });
});
