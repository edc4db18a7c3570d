/**
 * An app that exits in its stream's end callback loses nothing: `end(cb)`
 * fires only when the last bytes and the FIN are in the kernel (as with a
 * TCP socket), not while they still wait in the SDK's IPC writer. Before,
 * about one run in eight of this exact pattern ended the stream 64 KiB short
 * at the receiver, with a clean FIN.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { connect, type Driver } from "../../src/driver/index.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";

const driverModule = join(import.meta.dir, "../../src/driver/index.ts");
const BYTES = 16 << 20;
const RUNS = 12;
let c: Cluster;
let sink: Driver;
const received: Promise<number>[] = [];

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "flush-a" }, { name: "b", hostname: "flush-b" }] });
  await c.trust("a", "b");
  sink = await connect({ home: c.daemon("b").home });
  const server = await sink.listen(9000);
  server.on("connection", (s) => {
    received.push(
      new Promise((resolve) => {
        let got = 0;
        s.on("data", (d: Buffer) => (got += d.length));
        s.on("end", () => resolve(got));
        s.on("error", () => resolve(-got));
      }),
    );
  });
});

afterAll(async () => {
  await sink?.close();
  await c?.stop();
});

test(`a sender that exits in end()'s callback: all ${BYTES >> 20} MiB arrive, ${RUNS} times out of ${RUNS}`, async () => {
  const script = `import { connect } from ${JSON.stringify(driverModule)};
const pilot = await connect({ home: ${JSON.stringify(c.daemon("a").home)} });
const s = await pilot.dial("flush-b", 9000);
const chunk = Buffer.alloc(256 * 1024, 7);
for (let sent = 0; sent < ${BYTES}; sent += chunk.length) if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
s.end(() => process.exit(0));`;
  for (let i = 0; i < RUNS; i++) {
    const child = Bun.spawn([process.execPath, "-e", script], { stdout: "ignore", stderr: "inherit" });
    expect(await child.exited).toBe(0);
  }
  const totals = await Promise.all(received);
  expect(totals).toEqual(Array.from({ length: RUNS }, () => BYTES));
}, 120_000);
