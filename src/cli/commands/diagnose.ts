/**
 * Diagnostics over the overlay: `ping` (echo probes on the tunnel itself),
 * `traceroute` (the path to a node, connection set-up time to its echo
 * service, round trips), `bench` (throughput through the echo service on
 * port 7, with every echoed byte checked).
 */
import type { CommandSpec } from "../command.ts";
import type { Driver, PilotSocket } from "../../driver/index.ts";
import { CliError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { countOption, durationOption, sizeOption, targetArg } from "../args.ts";
import { asCliError, deadline } from "../sockets.ts";
import { ms, nodeLabel } from "../format.ts";
import { progressWanted, startProgress } from "../progress.ts";

const ECHO_PORT = 7;
/** Failures that end a ping at once; anything else (timeout, unreachable) is one lost probe. */
const PROBE_ERRORS = new Set(["timeout", "unreachable"]);

interface Resolved {
  address: string;
  node_id: number;
}

async function resolveTarget(d: Driver, target: string): Promise<Resolved> {
  return (await d.call("resolve", { target })) as Resolved;
}

/** True if a tunnel session with the node is already up (so the next probe pays no handshake). */
async function tunnelUp(d: Driver, nodeId: number): Promise<boolean> {
  const r = (await d.call("peers")) as { peers: { node_id: number; established: boolean }[] };
  return r.peers.some((p) => p.node_id === nodeId && p.established);
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

export const pingCommand: CommandSpec = {
  name: "ping",
  args: "<target>",
  description: "Send echo probes to a node over the encrypted tunnel and report round-trip times and loss",
  options: [
    { flags: "--count <n>", description: "number of probes", default: 4 },
    { flags: "--interval <duration>", description: "wait between probes, e.g. 200ms (default 1s)" },
    { flags: "--timeout <duration>", description: "how long to wait for each reply (default 3s)" },
    { flags: "--size <bytes>", description: "payload bytes per probe, 0-1024 (default 0)" },
  ],
  examples: ["pilot ping agent-b", "pilot ping 0:0000.0000.0005 --count 10 --interval 200ms --size 512"],
  returns: {
    target: "the node's address",
    node_id: "the node's id",
    results:
      "[{seq, bytes, rtt_ms, path ('direct' | 'punched' | 'relay' | 'relay-tcp': the way the probe went; 'self' for this node's own address, which loops back without the tunnel), handshake (true on a probe that also set up the tunnel)} or {seq, error, message}]",
    sent: "probes sent (fewer than --count if interrupted with Ctrl-C)",
    received: "replies received",
    loss_pct: "percentage of probes without a reply",
    min_ms: "fastest round trip",
    avg_ms: "mean round trip",
    max_ms: "slowest round trip",
  },
  errors: ["not_found", "timeout", "unreachable", "invalid_argument", "not_running", "registry_unavailable", "unauthorized"],
  async run({ out }, [text], o) {
    const target = targetArg(text);
    const count = countOption(o.count, "--count") ?? 4;
    const interval = durationOption(o.interval, "--interval", { allowZero: true }) ?? 1000;
    const timeout = durationOption(o.timeout, "--timeout") ?? 3000;
    const size = sizeOption(o.size, "--size", 1024) ?? 0;
    await withDaemon(async (d) => {
      const node = await resolveTarget(d, target);
      const self = node.address === d.address; // our own address loops back inside the daemon: no tunnel
      let cold = !self && !(await tunnelUp(d, node.node_id));
      out.line(`PING ${nodeLabel(node.address, target.includes(":") ? null : target)}: ${count} probe${count === 1 ? "" : "s"} of ${size} bytes ${self ? "to this node itself (loopback, no tunnel)" : "over the encrypted tunnel"}`);
      const results: Record<string, unknown>[] = [];
      const rtts: number[] = [];
      // Ctrl-C ends the run early with the summary so far, like ping(8).
      let interrupted = false;
      let wake: () => void = () => {};
      const stopped = new Promise<null>((resolve) => (wake = () => resolve(null)));
      const onSigint = () => {
        interrupted = true;
        wake();
      };
      process.once("SIGINT", onSigint);
      try {
        for (let seq = 0; seq < count && !interrupted; seq++) {
          if (seq > 0 && interval > 0) await Promise.race([Bun.sleep(interval), stopped]);
          if (interrupted) break;
          try {
            const r = (await Promise.race([d.call("ping", { target: node.address, seq, timeout_ms: timeout, size }), stopped])) as { rtt_ms: number; path?: string } | null;
            if (r === null) break;
            rtts.push(r.rtt_ms);
            results.push({ seq, bytes: size, rtt_ms: r.rtt_ms, path: r.path ?? "direct", ...(cold ? { handshake: true } : {}) });
            out.line(`seq=${seq} bytes=${size} time=${ms(r.rtt_ms)} path=${r.path ?? "direct"}${cold ? "   (includes the tunnel handshake)" : ""}`);
            cold = false;
          } catch (e: any) {
            if (!PROBE_ERRORS.has(e?.code)) throw e;
            results.push({ seq, error: e.code, message: e.message });
            out.line(`seq=${seq} ${e.code === "timeout" ? `no reply within ${ms(timeout)}` : e.message}`);
          }
        }
      } finally {
        process.off("SIGINT", onSigint);
      }
      const sent = results.length;
      const received = rtts.length;
      if (received === 0) {
        const last = results[results.length - 1] as { error: string } | undefined;
        throw new CliError(last?.error === "unreachable" ? "unreachable" : "timeout", `no reply from ${node.address}: ${sent} sent, 0 received${interrupted ? " (interrupted)" : ""}`, `its daemon may be offline or unreachable; check with: pilot find ${text}`);
      }
      const data = {
        target: node.address,
        node_id: node.node_id,
        results,
        sent,
        received,
        loss_pct: round3(((sent - received) / sent) * 100),
        min_ms: round3(Math.min(...rtts)),
        avg_ms: round3(rtts.reduce((a, b) => a + b, 0) / received),
        max_ms: round3(Math.max(...rtts)),
      };
      out.result(data, (r) => `--- ${text}: ${r.sent} sent, ${r.received} received, ${r.loss_pct}% loss; round trip min/avg/max ${ms(r.min_ms)} / ${ms(r.avg_ms)} / ${ms(r.max_ms)}`);
    });
  },
};

/** Writes `payload` and resolves with the round-trip time once as many bytes came back. */
function echoRoundTrip(socket: PilotSocket, payload: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const started = performance.now();
    const onData = (chunk: Buffer) => {
      got += chunk.length;
      if (got >= payload.length) {
        cleanup();
        resolve(performance.now() - started);
      }
    };
    const onError = (e: unknown) => {
      cleanup();
      reject(asCliError(e));
    };
    const onClose = () => {
      cleanup();
      reject(new CliError("connection_reset", "the echo connection closed during the trace"));
    };
    const cleanup = () => {
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    socket.on("data", onData);
    socket.once("error", onError);
    socket.once("close", onClose);
    socket.write(payload);
  });
}

async function dialTimed(d: Driver, address: string, timeoutMs: number): Promise<{ socket: PilotSocket; setupMs: number }> {
  const started = performance.now();
  const socket = await d.dial(address, ECHO_PORT, { timeoutMs }).catch((e) => {
    throw asCliError(e);
  });
  return { socket, setupMs: performance.now() - started };
}

export const tracerouteCommand: CommandSpec = {
  name: "traceroute",
  args: "<target>",
  description: "Show the overlay path to a node (direct or relayed hops), connection set-up time to its echo port, and round trips",
  options: [
    { flags: "--samples <n>", description: "round trips to measure after set-up", default: 3 },
    { flags: "--timeout <duration>", description: "give up after this long (default 10s)" },
  ],
  examples: ["pilot traceroute agent-b", "pilot traceroute 5 --samples 10 --json"],
  returns: {
    target: "the node's address",
    node_id: "the node's id",
    hops: "[{hop, node_id, address, hostname, path ('direct' | 'punched' | 'relay' | 'relay-tcp'), endpoint (the UDP address packets go to: the peer, or the beacon when relayed; the relay's URL for relay-tcp)}]",
    setup_ms: "time to open a stream to the echo port 7",
    handshake: "true if the set-up also established the tunnel (first contact)",
    rtt_samples: "[{rtt_ms, bytes}]",
  },
  errors: ["not_found", "timeout", "unreachable", "connection_refused", "connection_reset", "not_trusted", "invalid_argument", "not_running", "registry_unavailable"],
  async run({ out }, [text], o) {
    const target = targetArg(text);
    const samples = countOption(o.samples, "--samples", 1000) ?? 3;
    const timeout = durationOption(o.timeout, "--timeout") ?? 10_000;
    await withDaemon((d) =>
      deadline(
        (async () => {
          const node = await resolveTarget(d, target);
          const self = node.address === d.address; // loopback: no tunnel, no path
          const cold = !self && !(await tunnelUp(d, node.node_id));
          const { socket, setupMs } = await dialTimed(d, node.address, timeout);
          try {
            const rtt: { rtt_ms: number; bytes: number }[] = [];
            for (let i = 0; i < samples; i++) {
              const payload = Buffer.from(`trace-${i}`);
              rtt.push({ rtt_ms: round3(await echoRoundTrip(socket, payload)), bytes: payload.length });
            }
            const peers = (await d.call("peers")) as { peers: any[] };
            const peer = peers.peers.find((p) => p.node_id === node.node_id);
            const hops = [
              { hop: 1, node_id: node.node_id, address: node.address, hostname: peer?.hostname ?? (target.includes(":") ? null : target), path: self ? "self" : (peer?.path ?? "direct"), endpoint: peer?.endpoint ?? null },
            ];
            const data = { target: node.address, node_id: node.node_id, hops, setup_ms: round3(setupMs), handshake: cold, rtt_samples: rtt };
            out.result(data, (r) =>
              [
                `traceroute to ${nodeLabel(r.target, target.includes(":") ? null : target)} over the Pilot overlay`,
                ...r.hops.map((h: any) => `  ${h.hop}  ${nodeLabel(h.address, h.hostname)}  ${h.path}${h.endpoint ? (h.path === "relay-tcp" ? ` via ${h.endpoint} (the beacon's relay over WebSocket)` : ` via udp ${h.endpoint}${h.path === "relay" ? " (the beacon's relay)" : ""}`) : ""}`),
                `connection set-up to echo port ${ECHO_PORT}: ${ms(r.setup_ms)}${r.handshake ? " (includes the tunnel handshake)" : ""}`,
                `round trips: ${r.rtt_samples.map((s: any) => ms(s.rtt_ms)).join("  ")}`,
              ].join("\n"),
            );
          } finally {
            socket.destroy();
          }
        })(),
        timeout,
        `traceroute to ${text} did not finish within ${ms(timeout)}`,
        `check the node with: pilot ping ${text}`,
      ),
    );
  },
};

const BENCH_CHUNK = 64 * 1024;
/** Byte i of the stream is i % 251 (a prime, so chunk boundaries never line up with the pattern). */
const PATTERN_PERIOD = 251;

function benchPattern(): Buffer {
  const p = Buffer.allocUnsafe(BENCH_CHUNK + PATTERN_PERIOD);
  for (let i = 0; i < p.length; i++) p[i] = i % PATTERN_PERIOD;
  return p;
}

interface BenchRun {
  sent: number;
  received: number;
  sendMs: number;
  totalMs: number;
  mismatchAt: number | null;
}

/** Pushes `size` bytes through the echo connection while checking every byte that comes back, until all are back. */
function pump(socket: PilotSocket, size: number, onEchoed: (bytes: number) => void = () => {}): Promise<BenchRun> {
  const pattern = benchPattern();
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let sendMs = 0;
    let received = 0;
    let mismatchAt: number | null = null;
    socket.on("data", (chunk: Buffer) => {
      if (mismatchAt === null) {
        for (let i = 0; i < chunk.length; i += BENCH_CHUNK) {
          const piece = chunk.subarray(i, i + BENCH_CHUNK);
          const at = (received + i) % PATTERN_PERIOD;
          if (!piece.equals(pattern.subarray(at, at + piece.length))) {
            mismatchAt = received + i + piece.findIndex((b, j) => b !== pattern[at + j]);
            break;
          }
        }
      }
      received += chunk.length;
      onEchoed(received);
      // Done when every byte is back (not at the echo's FIN: the measurement needs no close handshake).
      if (received >= size) resolve({ sent: size, received, sendMs, totalMs: performance.now() - started, mismatchAt });
    });
    socket.once("error", (e) => reject(asCliError(e)));
    socket.once("close", () => reject(new CliError("connection_reset", `the echo connection closed after ${received} of ${size} bytes`)));
    let offset = 0;
    const write = () => {
      while (offset < size) {
        const at = offset % PATTERN_PERIOD;
        const n = Math.min(BENCH_CHUNK, size - offset);
        offset += n;
        if (!socket.write(pattern.subarray(at, at + n))) {
          socket.once("drain", write);
          return;
        }
      }
      sendMs = performance.now() - started;
    };
    write();
  });
}

export const benchCommand: CommandSpec = {
  name: "bench",
  args: "<target> [size_mb]",
  description: "Measure stream throughput to a node through its echo service (port 7), checking every echoed byte",
  options: [
    { flags: "--timeout <duration>", description: "give up after this long (default 120s)" },
    { flags: "--no-baseline", description: "skip measuring plain TCP and raw UDP over this machine's loopback for comparison" },
  ],
  examples: ["pilot bench agent-b          # 1 MB there and back, beside loopback TCP and UDP", "pilot bench agent-b 100 --json"],
  returns: {
    target: "the node's address",
    node_id: "the node's id",
    size_bytes: "bytes asked for (size_mb x 1,000,000)",
    sent_bytes: "bytes written",
    recv_bytes: "bytes echoed back",
    verified: "true: every echoed byte matched what was sent",
    setup_ms: "time to open the stream",
    send_duration_ms: "time until the last byte was handed to the stream",
    total_duration_ms: "time until the last echoed byte arrived",
    send_mbps: "sent_bytes / send_duration, in MB/s (1 MB = 10^6 bytes)",
    total_mbps: "sent_bytes / total_duration, in MB/s: each byte crossed the tunnel twice",
    baseline: "unless --no-baseline: {tcp_loopback_mbps, udp_loopback_mbps} measured here in the same run, same bytes (at most 64 MB), and send_mbps as a ratio of each",
  },
  errors: ["not_found", "timeout", "unreachable", "connection_refused", "connection_reset", "not_trusted", "invalid_argument", "internal", "not_running"],
  async run({ out }, [text, sizeText], o) {
    const target = targetArg(text);
    const mb = sizeText === undefined ? 1 : Number(sizeText);
    if (!(Number.isFinite(mb) && mb > 0 && mb <= 100_000) || !/^[0-9.]+$/.test(sizeText ?? "1")) {
      throw new CliError("invalid_argument", `size_mb "${sizeText}" must be a number of megabytes above 0 (at most 100000)`, "for example: pilot bench agent-b 10");
    }
    const size = Math.max(1, Math.round(mb * 1e6));
    const timeout = durationOption(o.timeout, "--timeout") ?? 120_000;
    await withDaemon(async (d) => {
      const node = await resolveTarget(d, target);
      out.progress(`bench ${nodeLabel(node.address, target.includes(":") ? null : target)}: sending ${mb} MB through echo port ${ECHO_PORT}...`);
      const { socket, setupMs } = await dialTimed(d, node.address, Math.min(timeout, 30_000));
      let run: BenchRun;
      const progress = startProgress({ enabled: progressWanted(out.json), label: "echoed", total: size });
      try {
        run = await deadline(pump(socket, size, (n) => progress.update(n)), timeout, `bench did not finish within ${ms(timeout)}`, "try a smaller size, or a longer --timeout", () => socket.destroy());
      } finally {
        progress.finish();
        socket.destroy();
      }
      if (run.mismatchAt !== null || run.received !== run.sent) {
        throw new CliError(
          "internal",
          run.mismatchAt !== null ? `echoed data differs from what was sent, first at byte ${run.mismatchAt}` : `sent ${run.sent} bytes but ${run.received} came back`,
          "the stream corrupted or lost data: please report this with the command you ran",
        );
      }
      let baseline: Record<string, number> | undefined;
      if (o.baseline !== false) {
        out.progress("measuring loopback baselines (plain TCP, raw UDP)...");
        const { tcpLoopbackMBps, udpLoopbackMBps } = await import("../loopback-baseline.ts");
        const n = Math.min(size, 64e6);
        const tcp = await tcpLoopbackMBps(n);
        const udp = await udpLoopbackMBps(n);
        const pilot = run.sent / 1e3 / run.sendMs;
        baseline = { tcp_loopback_mbps: round3(tcp), udp_loopback_mbps: round3(udp), pilot_vs_tcp: round3(pilot / tcp), pilot_vs_udp: round3(pilot / udp) };
      }
      const data = {
        target: node.address,
        node_id: node.node_id,
        size_bytes: size,
        sent_bytes: run.sent,
        recv_bytes: run.received,
        verified: true,
        setup_ms: round3(setupMs),
        send_duration_ms: round3(run.sendMs),
        total_duration_ms: round3(run.totalMs),
        send_mbps: round3(run.sent / 1e3 / run.sendMs),
        total_mbps: round3(run.sent / 1e3 / run.totalMs),
        ...(baseline ? { baseline } : {}),
      };
      out.result(data, (r) =>
        [
          `bench ${nodeLabel(r.target, target.includes(":") ? null : target)} via echo port ${ECHO_PORT}`,
          `  sent      ${(r.sent_bytes / 1e6).toFixed(2)} MB in ${ms(r.send_duration_ms)}  (${r.send_mbps.toFixed(1)} MB/s)`,
          `  echoed    ${(r.recv_bytes / 1e6).toFixed(2)} MB in ${ms(r.total_duration_ms)}  (${r.total_mbps.toFixed(1)} MB/s, ${((r.total_mbps * 8) / 1000).toFixed(2)} Gbit/s), every byte verified`,
          `  set-up    ${ms(r.setup_ms)}`,
          ...(r.baseline
            ? [`  baseline  loopback TCP ${r.baseline.tcp_loopback_mbps.toFixed(0)} MB/s, raw UDP ${r.baseline.udp_loopback_mbps.toFixed(0)} MB/s (this machine, same run): Pilot sends at ${r.baseline.pilot_vs_udp.toFixed(2)}x raw UDP`]
            : []),
        ].join("\n"),
      );
    });
  },
};
