/**
 * Randomised end-to-end runs: random link impairments, buffer sizes, ISNs, write
 * sizes, reader pauses and close order. Every run must deliver both directions
 * byte-exact and close cleanly on both sides. A failure prints its seed.
 */
import { expect, test } from "bun:test";
import { Prng } from "../support/prng.ts";
import { Sink, Source, StreamPair, sha256, testData } from "../support/simulated-link.ts";

export function chaosRun(seed: number): string | undefined {
  const rng = new Prng(seed);
  const pick = <T>(xs: T[]) => xs[rng.int(0, xs.length - 1)]!;
  const link = {
    delay: pick([0.1, 1, 10, 50]),
    jitter: pick([0, 0, 1, 5]),
    loss: pick([0, 0.01, 0.05, 0.15]),
    duplicate: pick([0, 0.02, 0.05]),
    reorder: pick([0, 0.1, 0.3]),
    corrupt: pick([0, 0, 0.02]),
    bandwidth: pick([Number.POSITIVE_INFINITY, 1e6, 1e8]),
    queueLimit: pick([Number.POSITIVE_INFINITY, 32 * 1024]),
  };
  const config = {
    receiveBufferSize: pick([4096, 16 * 1024, 256 * 1024, 4 * 1024 * 1024]),
    sendBufferSize: pick([2000, 64 * 1024, 1024 * 1024]),
    noDelay: rng.chance(0.5),
    timeWait: 60_000, // at least the peer's FIN retransmission span (its user timeout)
  };
  const pair = new StreamPair({ seed, link, config, issA: rng.u32(), issB: rng.u32(), codec: link.corrupt ? "packet" : "direct" });
  const up = testData(rng.int(0, 300_000), seed * 3);
  const down = testData(rng.int(0, 300_000), seed * 3 + 1);
  const sinkA = new Sink();
  const sinkB = new Sink();
  const srcA = new Source(up, { chunk: pick([100, 5000, 100_000]), rng: rng.fork() });
  const srcB = new Source(down, { chunk: pick([100, 5000, 100_000]), rng: rng.fork() });
  const appRng = rng.fork();
  // Writers write in random sizes; readers stop reading for a while now and then.
  for (const [peer, src, sink] of [
    [pair.a, srcA, sinkA],
    [pair.b, srcB, sinkB],
  ] as const) {
    peer.apps.push({
      step(c, now) {
        sink.paused = Math.floor(now / 300) % 4 === 0 && appRng.chance(0.9);
        src.step(c);
        sink.step(c);
      },
    });
  }
  const done = pair.run(() => pair.a.closedEvent !== undefined && pair.b.closedEvent !== undefined, 600_000);
  const describe = JSON.stringify({ seed, link, config, up: up.length, down: down.length });
  if (!done) return `did not finish: ${describe} a=${pair.ca.state} b=${pair.b.conn?.state}`;
  if (pair.a.closedEvent!.error || pair.b.closedEvent!.error) {
    return `closed with error ${JSON.stringify([pair.a.closedEvent, pair.b.closedEvent])}: ${describe}`;
  }
  // Bytes still unread when the connection closed stay readable.
  sinkA.paused = sinkB.paused = false;
  sinkA.step(pair.ca);
  sinkB.step(pair.cb);
  if (sinkB.digest() !== sha256(up) || sinkA.digest() !== sha256(down)) return `data mismatch: ${describe}`;
  return undefined;
}

test("40 randomised runs deliver everything and close cleanly", () => {
  const failures: string[] = [];
  for (let seed = 1; seed <= 40; seed++) {
    const f = chaosRun(seed);
    if (f) failures.push(f);
  }
  expect(failures).toEqual([]);
});
