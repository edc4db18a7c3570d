/**
 * Baselines for `pilot bench`, measured on this machine in the same run:
 * plain TCP and raw UDP over 127.0.0.1, sender and receiver in this process.
 * They tell what "fast" means on a shared, noisy machine.
 */

/** MB/s (10^6 bytes) moving `bytes` over one TCP loopback connection with 256 KiB writes. */
export async function tcpLoopbackMBps(bytes: number): Promise<number> {
  let received = 0;
  let first = 0;
  let resolveDone!: (ms: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_s, d) {
        if (received === 0) first = performance.now();
        received += d.length;
        if (received >= bytes) resolveDone(performance.now() - first);
      },
    },
  });
  let drained: (() => void) | null = null;
  const client = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {}, drain: () => drained?.() } });
  const chunk = new Uint8Array(256 * 1024).fill(1);
  let sent = 0;
  while (sent < bytes) {
    const piece = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
    let off = 0;
    while (off < piece.length) {
      const n = client.write(piece.subarray(off));
      off += n;
      if (off < piece.length) await new Promise<void>((r) => (drained = r));
    }
    sent += piece.length;
  }
  const ms = await done;
  client.end();
  server.stop(true);
  return bytes / 1e3 / Math.max(ms, 0.001);
}

/** MB/s of 1400-byte UDP datagrams that actually arrive over loopback, sent in batches of 32. */
export async function udpLoopbackMBps(bytes: number): Promise<number> {
  let received = 0;
  let first = 0;
  let last = 0;
  const rx = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_s, d) {
        if (received === 0) first = performance.now();
        received += d.length;
        last = performance.now();
      },
    },
  });
  const tx = await Bun.udpSocket({ connect: { hostname: "127.0.0.1", port: rx.port } });
  const batch = Array.from({ length: 32 }, () => new Uint8Array(1400));
  for (let sent = 0; sent < bytes; sent += 32 * 1400) {
    tx.sendMany(batch);
    await new Promise((r) => setImmediate(r)); // let the receiver run: same process
  }
  const quietSince = () => performance.now() - last;
  while (received === 0 || quietSince() < 50) await Bun.sleep(10);
  tx.close();
  rx.close();
  return received / 1e3 / Math.max(last - first, 0.001);
}
