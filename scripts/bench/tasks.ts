/**
 * The task service (port 1003) between two real daemons on 127.0.0.1, driven
 * through the SDK the way an agent would:
 *
 *   submit       task_submit until the worker has stored it (one round trip on the task stream, durable on both ends)
 *   cycle        submit -> accept -> result -> the submitter sees `succeeded` (5 committed changes, 4 messages)
 *   4 MiB input  a submission carrying the largest inline input
 *   3 MiB result a result delivered, until the submitter has it
 *
 *   bun scripts/bench/tasks.ts [--samples 100]
 */
import { connect, TaskClient } from "../../src/driver/index.ts";
import { startCluster } from "../../test/support/cluster.ts";
import { stats } from "./baseline.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const ms = (us: number) => `${(us / 1000).toFixed(1)} ms`;

async function main() {
  const samples = arg("samples", 100);
  const c = await startCluster({ daemons: [{ name: "a", hostname: "bench-a" }, { name: "b", hostname: "bench-b" }] });
  try {
    await c.trust("a", "b");
    const da = await connect({ home: c.daemon("a").home });
    const db = await connect({ home: c.daemon("b").home });
    const a = new TaskClient(da);
    const b = new TaskClient(db);
    await da.call("ping", { target: "bench-b", seq: 0 });

    const submits: number[] = [];
    const cycles: number[] = [];
    for (let i = 0; i < samples + 5; i++) {
      const t0 = performance.now();
      const t = await a.submit("bench-b", { task: `bench ${i}` });
      const t1 = performance.now();
      if (!t.delivered) throw new Error("not delivered");
      await b.accept(t.id);
      await b.result(t.id, { text: "ok" });
      await a.wait(t.id, { intervalMs: 5 });
      const t2 = performance.now();
      if (i >= 5) {
        submits.push((t1 - t0) * 1000);
        cycles.push((t2 - t0) * 1000);
      }
    }
    const sub = stats(submits);
    const cyc = stats(cycles);
    console.log(`submit (stored by the worker):            p50 ${ms(sub.p50)}, p99 ${ms(sub.p99)}  (n=${sub.n})`);
    console.log(`cycle (submit..succeeded at submitter):   p50 ${ms(cyc.p50)}, p99 ${ms(cyc.p99)}`);

    const input = Buffer.alloc(4 * 1024 * 1024, 1);
    const big: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const t = await a.submit("bench-b", { task: "big input", input, waitMs: 30_000 });
      big.push(performance.now() - t0);
      if (!t.delivered) throw new Error("big input not delivered");
      ids.push(t.id);
    }
    const bigMs = Math.min(...big);
    console.log(`4 MiB input submitted:                    best ${bigMs.toFixed(0)} ms (${(4 / (bigMs / 1000)).toFixed(1)} MiB/s incl. IPC and both fsyncs), median ${[...big].sort((x, y) => x - y)[2]!.toFixed(0)} ms`);

    const result = new Uint8Array(3 * 1024 * 1024).fill(2);
    const res: number[] = [];
    for (const id of ids) {
      await b.accept(id);
      const t0 = performance.now();
      await b.result(id, { data: result });
      await a.wait(id, { intervalMs: 5 });
      res.push(performance.now() - t0);
    }
    const resMs = Math.min(...res);
    console.log(`3 MiB result delivered:                   best ${resMs.toFixed(0)} ms (${(3 / (resMs / 1000)).toFixed(1)} MiB/s), median ${[...res].sort((x, y) => x - y)[2]!.toFixed(0)} ms`);
    await da.close();
    await db.close();
  } finally {
    await c.stop();
  }
}

await main();
