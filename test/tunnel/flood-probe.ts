/**
 * What a flood does to a victim daemon, measured from outside: a trusted
 * peer's pings (one every `intervalMs`, not waiting for each other, so a
 * stall shows as latency and a drop as loss) and the victim's CPU time from
 * /proc. Shared by test/tunnel/handshake-flood.test.ts and
 * scripts/bench/handshake-flood.ts.
 */
import { readFileSync } from "node:fs";
import type { Driver } from "../../src/driver/index.ts";

export interface PingSummary {
  readonly sent: number;
  readonly received: number;
  readonly lossPct: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** Pings `target` through `driver` every `intervalMs` for `ms`; lost = no answer within `timeoutMs`. */
export async function pingSeries(driver: Driver, target: string, ms: number, intervalMs = 10, timeoutMs = 1000): Promise<PingSummary> {
  const rtts: number[] = [];
  let sent = 0;
  let lost = 0;
  const inflight: Promise<void>[] = [];
  const end = performance.now() + ms;
  let seq = 1000;
  while (performance.now() < end) {
    sent++;
    inflight.push(
      (driver.call("ping", { target, seq: seq++, timeout_ms: timeoutMs }) as Promise<{ rtt_ms: number }>).then(
        (r) => void rtts.push(r.rtt_ms),
        () => void lost++,
      ),
    );
    await Bun.sleep(intervalMs);
  }
  await Promise.all(inflight);
  rtts.sort((a, b) => a - b);
  const at = (q: number) => (rtts.length === 0 ? NaN : rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))]!);
  return { sent, received: rtts.length, lossPct: (lost / sent) * 100, p50: at(0.5), p99: at(0.99), max: rtts.length ? rtts[rtts.length - 1]! : NaN };
}

/** utime + stime of `pid` in seconds (Linux). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields after the command: state is index 0, utime 11, stime 12 (1-based 14 and 15 in proc(5)).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident set size of `pid` in MiB (Linux). */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}
