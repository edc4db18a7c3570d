/**
 * Local events to apps, in one process: an EventBus, the real IPC server on a
 * unix socket, and drivers subscribed through it (`pilot.events()`).
 *
 *   events/s to 1 and to 10 subscribers (about 200-byte events), with a baseline in the same run:
 *   the same number of `call("events_recent", {limit: 1})` round trips (the control path's rate)
 *
 *   bun scripts/bench/events.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventBus } from "../../src/daemon/event-bus.ts";
import { connect, type Driver } from "../../src/driver/index.ts";
import { startIpcServer } from "../../src/ipc/server.ts";
import { FakeNetwork } from "../../test/support/fake-local-node.ts";

const dir = mkdtempSync(join(tmpdir(), "pilot-bench-events-"));
const node = new FakeNetwork().addNode(7);
const bus = new EventBus();
Object.assign(node, { events: bus });
const socketPath = join(dir, "pilot.sock");
const server = await startIpcServer({ node, socketPath });

async function run(subscribers: number, events: number): Promise<number> {
  const drivers: Driver[] = [];
  for (let i = 0; i < subscribers; i++) drivers.push(await connect({ socketPath }));
  const done = drivers.map(async (d) => {
    let n = 0;
    for await (const e of d.events({ types: ["app.bench"], queueLimit: events })) {
      if (e.type === "events.gap") throw new Error(`a subscriber lost ${e.data.dropped} events`);
      if (++n === events) break;
    }
  });
  await Bun.sleep(50);
  const data = { address: "0:0000.0000.0005", node_id: 5, reason: "x".repeat(100) };
  const started = performance.now();
  for (let i = 0; i < events; i++) {
    bus.publish("app.bench", data);
    // Let the sockets drain now and then, as a daemon's event loop would between inputs.
    if (i % 500 === 499) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(done);
  const seconds = (performance.now() - started) / 1000;
  for (const d of drivers) await d.close();
  return events / seconds;
}

async function roundTrips(count: number): Promise<number> {
  const d = await connect({ socketPath });
  const started = performance.now();
  for (let i = 0; i < count; i++) await d.call("events_recent", { limit: 1 });
  const seconds = (performance.now() - started) / 1000;
  await d.close();
  return count / seconds;
}

await run(1, 5_000); // warm up
const one = await run(1, 100_000);
const ten = await run(10, 20_000);
const rtt = await roundTrips(20_000);
const k = (n: number) => `${Math.round(n / 1000)}k/s`;
console.log(`events to 1 subscriber     ${k(one).padEnd(10)} | baseline: events_recent round trips ${k(rtt)}`);
console.log(`events to 10 subscribers   ${k(ten).padEnd(10)} per subscriber (${k(ten * 10)} frames in all)`);
await server.close();
rmSync(dir, { recursive: true, force: true });
