/**
 * js-libp2p (TCP + Noise + yamux), the peer that scripts/bench/peers compares
 * Pilot with on 127.0.0.1. Runs on Node or Bun (`node peer.mjs ...`, `bun peer.mjs ...`).
 * Prints JSON lines on stdout: first {ready...}, then the result.
 *
 *   peer.mjs listen                        -> {ready, addr}; serves /bench/sink and /bench/echo
 *   peer.mjs bulk <addr> <bytes>           -> {bytes, seconds, cpu, sinkCpu}  (CPU seconds of sender and sink during the transfer)
 *   peer.mjs rtt <addr> <samples>          -> {samples: [us...]}     (1 byte echoed on one open stream)
 *
 * The listener prints {cpu} (its own user+system CPU seconds) when it gets SIGTERM.
 */
import { createLibp2p } from "libp2p";
import { tcp } from "@libp2p/tcp";
import { noise, pureJsCrypto } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { multiaddr } from "@multiformats/multiaddr";

// libp2p 3 uses Promise.withResolvers (Node >= 22); Debian's Node 20 lacks it.
Promise.withResolvers ??= function () {
  let resolve, reject;
  const promise = new Promise((a, b) => ((resolve = a), (reject = b)));
  return { promise, resolve, reject };
};
// Bun's node:crypto has no ChaCha20-Poly1305 (Noise's cipher): there Noise uses its pure-JS crypto.
const isBun = typeof globalThis.Bun !== "undefined";

const print = (v) => process.stdout.write(JSON.stringify(v) + "\n");
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function node(listen) {
  return createLibp2p({
    addresses: { listen: listen ? ["/ip4/127.0.0.1/tcp/0"] : [] },
    transports: [tcp()],
    connectionEncrypters: [isBun ? noise({ crypto: pureJsCrypto }) : noise()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 1000 },
  });
}

const len = (d) => d.byteLength;

async function listen() {
  const n = await node(true);
  await n.handle(
    "/bench/sink",
    (stream) => {
      let got = 0;
      const t0 = performance.now();
      const cpu0 = cpu();
      stream.addEventListener("message", (e) => (got += len(e.data)));
      stream.addEventListener("remoteCloseWrite", () => {
        const seconds = (performance.now() - t0) / 1000;
        stream.send(new TextEncoder().encode(JSON.stringify({ bytes: got, seconds, sinkCpu: cpu() - cpu0 })));
        stream.close().catch(() => {});
      });
    },
    { maxInboundStreams: 16 },
  );
  await n.handle(
    "/bench/echo",
    (stream) => {
      stream.addEventListener("message", (e) => stream.send(e.data));
      stream.addEventListener("remoteCloseWrite", () => stream.close().catch(() => {}));
    },
    { maxInboundStreams: 1024 },
  );
  print({ ready: true, addr: n.getMultiaddrs()[0].toString() });
  process.on("SIGTERM", () => {
    print({ cpu: cpu() });
    process.exit(0);
  });
}

async function bulk(addr, bytes) {
  const n = await node(false);
  const stream = await n.dialProtocol(multiaddr(addr), "/bench/sink");
  const reply = new Promise((resolve) => {
    let text = "";
    stream.addEventListener("message", (e) => {
      text += new TextDecoder().decode(e.data.subarray ? e.data.subarray() : e.data);
      try {
        resolve(JSON.parse(text));
      } catch {}
    });
  });
  const chunk = new Uint8Array(256 * 1024).fill(7);
  const cpu0 = cpu();
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!stream.send(chunk)) await stream.onDrain();
  }
  await stream.close();
  const r = await reply;
  print({ ...r, cpu: cpu() - cpu0 });
  await n.stop();
  process.exit(0);
}

async function rtt(addr, samples) {
  const n = await node(false);
  const stream = await n.dialProtocol(multiaddr(addr), "/bench/echo");
  let waiter = null;
  stream.addEventListener("message", () => waiter?.());
  const one = new Uint8Array([1]);
  const out = [];
  for (let i = 0; i < samples + 50; i++) {
    const t = performance.now();
    await new Promise((r) => {
      waiter = r;
      stream.send(one);
    });
    if (i >= 50) out.push((performance.now() - t) * 1000);
  }
  print({ samples: out });
  await n.stop();
  process.exit(0);
}

const [role, a, b] = process.argv.slice(2);
if (role === "listen") await listen();
else if (role === "bulk") await bulk(a, Number(b));
else if (role === "rtt") await rtt(a, Number(b));
else {
  console.error("usage: peer.mjs listen | bulk <addr> <bytes> | rtt <addr> <samples>");
  process.exit(2);
}
