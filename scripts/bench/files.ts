/**
 * File transfer figures through two real daemons (and a real rendezvous) on
 * 127.0.0.1, beside the stream throughput measured in the same run:
 *
 *   stream throughput   app -> daemon A -> tunnel -> daemon B -> app (as bench:e2e measures it)
 *   file throughput     pilot send-file: daemon A reads, hashes and streams; daemon B hashes,
 *                       writes, fsyncs and links into received/ (bytes / the call's own time)
 *   resume after kill   the receiving daemon is killed (SIGKILL) at 50 %, restarted, and the
 *                       file sent again: how much went over the wire twice
 *
 *   bun scripts/bench/files.ts [--mb 1024] [--rounds 1]
 *   PILOT_BIN=dist/pilot bun scripts/bench/files.ts     # daemons from the compiled binary
 *
 * With --rounds N the stream and the file are measured N times, back to back
 * (stream, file, stream, file, ...), and the median round's ratio is the
 * figure: on a shared machine the load changes between runs, and a ratio of
 * two runs far apart measures that change. Each round prints its numbers.
 *
 * Targets (issue 10): file >= 0.8x stream; re-sent after the kill <= 1 % of the file.
 * "Re-sent" counts every byte the sender handed to its stream in the first
 * attempt beyond the offset the second attempt resumed from (so it includes
 * what was in flight when the receiver died), as a share of the file.
 */
import { randomFillSync } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Driver } from "../../src/driver/index.ts";
import type { FileTransfersResult } from "../../src/protocol/exchange-calls.ts";
import { startCluster } from "../../test/support/cluster.ts";
import { child } from "./baseline.ts";

const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");

/** Child role: accept one stream on `port` through the daemon at `home`, count it, report (as e2e.ts does). */
async function sink(home: string, port: number) {
  const d = await connect({ home });
  const server = await d.listen(port);
  print({ ready: true });
  server.on("connection", (s) => {
    let got = 0;
    const t0 = performance.now();
    s.on("data", (c: Buffer) => (got += c.length));
    s.on("end", () => {
      print({ bytes: got, seconds: (performance.now() - t0) / 1000 });
      process.exit(0);
    });
  });
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

function makeFile(path: string, bytes: number): void {
  const fd = openSync(path, "w", 0o600);
  const block = Buffer.allocUnsafe(4 << 20);
  try {
    for (let left = bytes; left > 0; left -= block.length) {
      randomFillSync(block);
      writeSync(fd, block, 0, Math.min(block.length, left));
    }
  } finally {
    closeSync(fd);
  }
}

const mbps = (bytes: number, seconds: number) => bytes / seconds / 1e6;

const loadAverage = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** The receiver's own account of the last file it stored (its "file received" log line): final fsync and transfer time. */
function receiverLog(home: string): { fsync_ms?: number; seconds?: number } {
  try {
    const lines = readFileSync(join(home, "pilot.log"), "utf8").split("\n").filter((l) => l.includes("file received"));
    const last = lines.at(-1);
    if (!last) return {};
    const fsync = /fsync_ms"?[:=]\s*(\d+)/.exec(last);
    const secs = /seconds"?[:=]\s*([\d.]+)/.exec(last);
    return { fsync_ms: fsync ? Number(fsync[1]) : undefined, seconds: secs ? Number(secs[1]) : undefined };
  } catch {
    return {};
  }
}

async function streamThroughput(a: Driver, sinkHome: string, bytes: number): Promise<number> {
  const sinkProc = child(["sink", sinkHome, "9000"], import.meta.path);
  await sinkProc.ready;
  const s = await a.dial("bench-b", 9000);
  const chunk = Buffer.alloc(256 * 1024, 7);
  for (let sent = 0; sent < bytes; sent += chunk.length) if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
  s.end();
  const r = await sinkProc.result;
  return mbps(r.bytes, r.seconds);
}

async function main() {
  const mb = arg("mb", 1024);
  const rounds = Math.max(1, arg("rounds", 1));
  const bytes = mb << 20;
  console.log(`Pilot file-transfer benchmark (${mb} MiB; daemons from ${process.env.PILOT_BIN ?? "source"})`);
  const dir = mkdtempSync(join(tmpdir(), "pilot-bench-files-"));
  const file = join(dir, "payload.bin");
  makeFile(file, bytes);

  const c = await startCluster({ daemons: [{ name: "a", hostname: "bench-a" }, { name: "b", hostname: "bench-b" }] });
  try {
    await c.trust("a", "b");
    let a = await connect({ home: c.daemon("a").home });
    await a.call("ping", { target: "bench-b", seq: 0 }); // tunnel up before timing

    // 1 and 2, `--rounds` times: the stream as bench:e2e measures it, then the file end to end (read, hash,
    // send, hash, write, fsync, link). Each round's ratio compares two runs taken back to back, so a change in
    // the machine's load between rounds moves both; the median round is the figure.
    const pids = [c.daemon("a").pid, c.daemon("b").pid];
    const b0 = await connect({ home: c.daemon("b").home });
    const runs: { stream: number; file: number; seconds: number; wall: number; cpu: number[]; fsyncMs?: number }[] = [];
    let sent!: Awaited<ReturnType<Driver["sendFile"]>>;
    for (let round = 0; round < rounds; round++) {
      const stream = await streamThroughput(a, c.daemon("b").home, bytes);
      const cpu0 = pids.map(cpuSeconds);
      const t0 = performance.now();
      sent = await a.sendFile("bench-b", file);
      const wall = (performance.now() - t0) / 1000;
      const cpu = pids.map((pid, i) => (cpuSeconds(pid) - cpu0[i]!) / wall);
      const stored = (await b0.received()).files.find((f) => f.name === sent.name);
      if (!stored || stored.sha256 !== sent.sha256) throw new Error("the received file does not match");
      await b0.clearReceived();
      runs.push({ stream, file: mbps(sent.bytes, sent.seconds), seconds: sent.seconds, wall, cpu, fsyncMs: receiverLog(c.daemon("b").home).fsync_ms });
      if (rounds > 1) console.log(`round ${round + 1}: stream ${stream.toFixed(1)} MB/s, file ${mbps(sent.bytes, sent.seconds).toFixed(1)} MB/s, ${(mbps(sent.bytes, sent.seconds) / stream).toFixed(2)}x (load ${loadAverage()})`);
    }
    await b0.close();
    const median = [...runs].sort((x, y) => x.file / x.stream - y.file / y.stream)[Math.floor((runs.length - 1) / 2)]!;
    const { stream, seconds, wall, cpu } = median;
    const fileRate = median.file;

    // 3. Kill -9 of the receiver at 50 %, restart, send again.
    const partialDir = join(c.daemon("b").home, "files", "partial");
    let senderMax = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        try {
          const t = ((await a.call("file_transfers")) as FileTransfersResult).transfers.find((x) => x.direction === "out");
          if (t) senderMax = Math.max(senderMax, t.bytes);
        } catch {
          // the call may race the end of the transfer
        }
        await Bun.sleep(5);
      }
    })();
    const first = a.sendFile("bench-b", file, { timeoutMs: 2000 }).then(
      () => null,
      (e) => e,
    );
    let receiverAtKill = 0;
    for (;;) {
      const parts = existsSync(partialDir) ? readdirSync(partialDir) : [];
      receiverAtKill = parts.length ? statSync(join(partialDir, parts[0]!)).size : 0;
      if (receiverAtKill >= bytes / 2) break;
      await Bun.sleep(2);
    }
    const bPid = c.daemon("b").pid;
    process.kill(bPid, "SIGKILL");
    const failed = await first;
    polling = false;
    await poll;
    if (!failed) throw new Error("the first attempt should have failed");
    await c.startDaemon({ name: "b", hostname: "bench-b" });
    await a.close();
    a = await connect({ home: c.daemon("a").home });
    const resumed = await a.sendFile("bench-b", file);
    await a.close();
    if (resumed.sha256 !== sent.sha256) throw new Error("the resumed file's SHA-256 differs");
    const resentBytes = Math.max(0, senderMax - resumed.resumed_from);
    const lostAtReceiver = Math.max(0, receiverAtKill - resumed.resumed_from);

    const pct = (n: number) => `${((n / bytes) * 100).toFixed(2)} %`;
    console.log("");
    console.log(`machine              ${navigator.hardwareConcurrency} cores, load average ${loadAverage()} (at the end)`);
    console.log(`stream throughput    ${stream.toFixed(1)} MB/s (app to app through both daemons)`);
    console.log(`file throughput      ${fileRate.toFixed(1)} MB/s (${seconds.toFixed(2)} s in the daemon, ${wall.toFixed(2)} s for the call) | file/stream ${(fileRate / stream).toFixed(2)}x${rounds > 1 ? ` (median of ${rounds} rounds: ${runs.map((r) => (r.file / r.stream).toFixed(2)).join(", ")})` : ""} | target >= 0.8x`);
    console.log(`file transfer detail CPU s/s sender daemon ${cpu[0]!.toFixed(2)}, receiver daemon ${cpu[1]!.toFixed(2)}; receiver's final fsync ${median.fsyncMs ?? "?"} ms`);
    console.log(
      `resume after kill -9 killed at ${pct(receiverAtKill)} written at the receiver; resumed from ${pct(resumed.resumed_from)}; ` +
        `re-sent ${(resentBytes / 2 ** 20).toFixed(1)} MiB = ${pct(resentBytes)} of the file (sender had sent ${pct(senderMax)}; receiver lost ${(lostAtReceiver / 2 ** 20).toFixed(1)} MiB written after its last fsync) | target <= 1 %`,
    );
    console.log(`resumed transfer     ${mbps(resumed.bytes - resumed.resumed_from, resumed.seconds).toFixed(1)} MB/s for the rest (${resumed.seconds.toFixed(2)} s, including re-hashing the kept ${pct(resumed.resumed_from)} on both sides)`);
  } finally {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "sink") await sink(process.argv[3]!, Number(process.argv[4]));
else await main();
