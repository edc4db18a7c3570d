/**
 * Hostile load, memory: a peer that opens streams and never reads what comes
 * back (a zero window) must not be able to make a daemon hold more than its
 * share of the stream-buffer budget, and what it holds is released when the
 * zero-window timeout ends those streams. Real daemons on 127.0.0.1.
 *
 * Before the budget, each such stream to the echo service pinned ~9.8 MiB in
 * the victim (4 MiB send + 4 MiB receive + the echo backlog): 48 streams took
 * a daemon from ~60 to ~530 MiB, and zero-window probes kept them alive forever.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { connect, type Driver, type PilotSocket } from "../../src/driver/index.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";

const MiB = 1 << 20;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+([0-9]+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function buffers(c: Cluster, name: string): Promise<any> {
  const r = await c.pilot(name, ["info"]);
  return r.json.data.buffers;
}

/** Writes `bytes` into the socket as fast as it takes them (never reads). */
function flood(socket: PilotSocket, bytes: number): void {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  const pump = () => {
    while (sent < bytes) {
      sent += chunk.length;
      if (!socket.write(chunk)) return void socket.once("drain", pump);
    }
  };
  pump();
}

async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("a peer that never reads", () => {
  let c: Cluster;
  let attacker: Driver;

  beforeAll(async () => {
    c = await startCluster({
      daemons: [
        { name: "victim", hostname: "victim", extraArgs: ["--zero-window-timeout", "6s"] },
        { name: "attacker", hostname: "attacker" },
      ],
    });
    await c.trust("victim", "attacker");
    attacker = await connect({ home: c.daemon("attacker").home });
  }, 60_000);

  afterAll(async () => {
    attacker?.close();
    await c?.stop();
  });

  test("48 zero-window streams to echo pin a bounded amount, and the zero-window timeout releases it", async () => {
    const victimPid = c.daemon("victim").pid;
    const rssBefore = rssMiB(victimPid);
    const sockets: PilotSocket[] = [];
    const errors: string[] = [];
    for (let i = 0; i < 48; i++) {
      const s = await attacker.dial("victim", 7);
      s.pause(); // never read the echo
      s.on("error", (e: any) => errors.push(`${e.pilotCode ?? e.code}: ${e.message}`));
      sockets.push(s);
      flood(s, 8 * MiB);
    }
    // Let everything that can pile up pile up.
    await Bun.sleep(3000);
    const b = await buffers(c, "victim");
    const rssDuring = rssMiB(victimPid);
    console.log(`victim: buffers held ${(b.held / MiB).toFixed(1)} MiB (budget ${b.budget / MiB} MiB, per peer ${b.per_peer / MiB} MiB), RSS ${rssBefore.toFixed(0)} -> ${rssDuring.toFixed(0)} MiB`);
    // At most one peer's share plus each stream's floor (16 KiB each way).
    expect(b.held).toBeLessThanOrEqual(b.per_peer + 48 * 32 * 1024);
    expect(rssDuring - rssBefore).toBeLessThan(80);

    // The victim ends each stream once the attacker's window has been shut for 6 s.
    const attackerAddress = c.daemon("attacker").address;
    await until("the zero-window streams to be closed", 20_000, async () => {
      const conns = await c.pilot("victim", ["connections"]);
      return !conns.json.data.connections.some((x: any) => x.remote_addr === attackerAddress && x.state === "established");
    });
    expect((await buffers(c, "victim")).held).toBeLessThan(1 * MiB);
    // The attacker's side learns why.
    await until("the attacker's sockets to fail", 10_000, async () => errors.length === 48);
    console.log(`attacker's sockets: ${errors[0]}`);
    // Told why, not just reset: the victim's RST carries the reason (docs/PROTOCOL.md, refusal reasons).
    for (const e of errors) expect(e).toBe("connection_reset: the peer ended the connection: this side kept its receive window closed too long (the application was not reading)");
    for (const s of sockets) s.destroy();
  }, 60_000);
});

describe("a peer that grows its buffers, then stops reading", () => {
  let c: Cluster;

  beforeAll(async () => {
    c = await startCluster({
      daemons: [
        { name: "victim", hostname: "victim2", extraArgs: ["--buffer-budget", "16MiB"] },
        { name: "attacker", hostname: "attacker2" },
        { name: "good", hostname: "good2" },
      ],
    });
    await c.trust("victim", "attacker");
    await c.trust("victim", "good");
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
  });

  test("its streams stay within its share, and another peer still moves data at full speed", async () => {
    const attacker = await connect({ home: c.daemon("attacker").home });
    const good = await connect({ home: c.daemon("good").home });
    try {
      // Read fast first (the victim's buffers grow with the rate), then stop reading.
      const sockets: PilotSocket[] = [];
      for (let i = 0; i < 8; i++) {
        const s = await attacker.dial("victim2", 7);
        let got = 0;
        await new Promise<void>((resolve) => {
          s.on("data", (d: Buffer) => {
            got += d.length;
            if (got >= 8 * MiB) {
              s.pause();
              resolve();
            }
          });
          flood(s, 64 * MiB);
        });
        sockets.push(s);
      }
      await Bun.sleep(2000);
      const b = await buffers(c, "victim");
      console.log(`victim: held ${(b.held / MiB).toFixed(1)} MiB, largest peer ${(b.largest_peer?.held / MiB).toFixed(1)} MiB, per peer limit ${(b.per_peer / MiB).toFixed(1)} MiB`);
      expect(b.held).toBeLessThanOrEqual(b.per_peer + 8 * 32 * 1024);

      // Meanwhile another trusted peer pushes 16 MiB through the victim's echo and back.
      const s = await good.dial("victim2", 7);
      const t0 = performance.now();
      const total = 16 * MiB;
      const done = new Promise<number>((resolve, reject) => {
        let got = 0;
        s.on("data", (d: Buffer) => {
          got += d.length;
          if (got >= total) resolve(got);
        });
        s.on("error", reject);
      });
      flood(s, total);
      expect(await done).toBe(total);
      const seconds = (performance.now() - t0) / 1000;
      console.log(`good peer: 16 MiB through echo and back in ${seconds.toFixed(2)} s while the attacker holds its share`);
      expect(seconds).toBeLessThan(20);
      s.destroy();
      for (const x of sockets) x.destroy();
    } finally {
      attacker.close();
      good.close();
    }
  }, 90_000);
});

describe("strangers against a public node's echo", () => {
  const STRANGERS = 10;
  const STREAMS = 2;
  let c: Cluster;

  beforeAll(async () => {
    // 11 nodes from one address: above the registry's default 10 new nodes a minute per address.
    c = await startCluster({ daemons: [{ name: "victim", hostname: "public-victim", public: true }], rendezvousArgs: ["--registration-rate", "100"] });
    await Promise.all(Array.from({ length: STRANGERS }, (_, i) => c.startDaemon({ name: `s${i}`, hostname: `stranger-${i}` })));
  }, 90_000);

  afterAll(async () => {
    await c?.stop();
  });

  test("each stranger holds at most its 2 MiB share, all of them at most 16 MiB (plus each stream's floor)", async () => {
    const drivers: Driver[] = [];
    const sockets: PilotSocket[] = [];
    try {
      // Each stranger reads fast first (the victim's buffers would grow to MiBs per stream), then stops reading.
      await Promise.all(
        Array.from({ length: STRANGERS }, async (_, i) => {
          const d = await connect({ home: c.daemon(`s${i}`).home });
          drivers.push(d);
          for (let k = 0; k < STREAMS; k++) {
            const s = await d.dial("public-victim", 7);
            sockets.push(s);
            s.on("error", () => {});
            let got = 0;
            await new Promise<void>((resolve) => {
              s.on("data", (b: Buffer) => {
                got += b.length;
                if (got >= 4 * MiB) {
                  s.pause();
                  resolve();
                }
              });
              flood(s, 64 * MiB);
            });
          }
        }),
      );
      await Bun.sleep(2000);
      const b = await buffers(c, "victim");
      const floors = (streams: number) => streams * 32 * 1024; // 16 KiB each way per stream
      console.log(
        `public victim, ${STRANGERS} strangers x ${STREAMS} echo streams not reading: held ${(b.held / MiB).toFixed(1)} MiB, by strangers ${(b.held_by_strangers / MiB).toFixed(1)} MiB (limit ${b.strangers_total / MiB}), largest peer ${(b.largest_peer?.held / MiB).toFixed(2)} MiB (per stranger ${b.per_stranger / MiB})`,
      );
      expect(b.per_stranger).toBe(2 * MiB);
      expect(b.strangers_total).toBe(16 * MiB);
      expect(b.largest_peer.held).toBeLessThanOrEqual(b.per_stranger + floors(STREAMS));
      expect(b.held_by_strangers).toBeLessThanOrEqual(b.strangers_total + floors(STRANGERS * STREAMS));
      // Only strangers talk to it: everything it holds is theirs.
      expect(b.held).toBeLessThanOrEqual(b.strangers_total + floors(STRANGERS * STREAMS));
    } finally {
      for (const s of sockets) s.destroy();
      for (const d of drivers) d.close();
    }
  }, 120_000);
});
