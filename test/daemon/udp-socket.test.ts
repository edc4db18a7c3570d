import { expect, test } from "bun:test";
import { UdpSocket } from "../../src/daemon/udp-socket.ts";

test("a mixed batch arrives as exactly the datagrams queued, in order per endpoint; runs leave through GSO", async () => {
  const got = new Map<number, Uint8Array[]>();
  const sinks = await Promise.all(
    [0, 1].map(async (k) =>
      UdpSocket.open({
        hostname: "127.0.0.1",
        port: 0,
        onDatagram: (d) => {
          const list = got.get(k) ?? [];
          list.push(d.slice());
          got.set(k, list);
        },
      }),
    ),
  );
  const tx = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: () => {} });
  try {
    const expected = new Map<number, Uint8Array[]>([[0, []], [1, []]]);
    let n = 0;
    const frame = (size: number) => new Uint8Array(size).fill(n++ & 0xff);
    const queue = (k: number, f: Uint8Array) => {
      expected.get(k)!.push(f);
      tx.send(f, "127.0.0.1", sinks[k]!.port);
    };
    for (let i = 0; i < 60; i++) queue(0, frame(1306)); // a long run: GSO
    queue(0, frame(700)); //                              ...ended by a shorter one
    queue(1, frame(1360)); //                            a single larger frame: never split
    for (let i = 0; i < 3; i++) queue(0, frame(1306)); // too short a run for GSO
    for (let i = 0; i < 10; i++) queue(1, frame(1000)); // another endpoint's run
    queue(0, frame(66));
    tx.flush();
    for (let i = 0; i < 100 && (got.get(0)?.length ?? 0) + (got.get(1)?.length ?? 0) < 76; i++) await Bun.sleep(10);
    for (const k of [0, 1]) {
      const sizes = (got.get(k) ?? []).map((d) => `${d.length}/${d[0]}`);
      expect(sizes).toEqual(expected.get(k)!.map((d) => `${d.length}/${d[0]}`));
    }
    if (process.platform === "linux") expect(tx.gsoSends).toBeGreaterThan(0);
    expect(tx.sendErrors).toBe(0);
  } finally {
    tx.close();
    for (const s of sinks) s.close();
  }
});

test("dual stack: a socket on :: carries IPv4 (senders unmapped to dotted IPv4) and IPv6 (bracketed hosts accepted)", async () => {
  const seen: string[] = [];
  const dual = await UdpSocket.open({ hostname: "::", port: 0, onDatagram: (d, host, port) => seen.push(`${host}|${port}|${d[0]}`) });
  const v4 = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: (d, host) => seen.push(`v4 got ${host}|${d[0]}`) });
  let v6: UdpSocket | undefined;
  try {
    expect(dual.dualStack).toBe(true);
    v4.send(new Uint8Array([1]), "127.0.0.1", dual.port);
    dual.send(new Uint8Array([2]), "127.0.0.1", v4.port);
    v6 = await UdpSocket.open({ hostname: "::1", port: 0, onDatagram: (d, host) => seen.push(`v6 got ${host}|${d[0]}`) });
    expect(v6.dualStack).toBe(false);
    v6.send(new Uint8Array([3]), "[::1]", dual.port);
    dual.send(new Uint8Array([4]), "[::1]", v6.port);
    for (let i = 0; i < 200 && seen.length < 4; i++) await Bun.sleep(10);
    expect(seen.sort()).toEqual([`127.0.0.1|${v4.port}|1`, `::1|${v6.port}|3`, `v4 got 127.0.0.1|2`, `v6 got ::1|4`].sort());
  } finally {
    dual.close();
    v4.close();
    v6?.close();
  }
});

test("a datagram the kernel refuses (the other address family) costs only itself, not the rest of its batch", async () => {
  const got: number[] = [];
  const rx = await UdpSocket.open({ hostname: "127.0.0.1", port: 0, onDatagram: (d) => got.push(d[0]!) });
  const tx = await UdpSocket.open({ hostname: "0.0.0.0", port: 0, gso: false, onDatagram: () => {} });
  try {
    tx.send(new Uint8Array([1]), "127.0.0.1", rx.port);
    tx.send(new Uint8Array([2]), "[::1]", 9); // an IPv6 candidate on an IPv4 socket: EAFNOSUPPORT
    tx.send(new Uint8Array([3]), "127.0.0.1", rx.port);
    tx.send(new Uint8Array([4]), "::1", 9);
    tx.send(new Uint8Array([5]), "127.0.0.1", rx.port);
    tx.send(new Uint8Array([6]), "::1", 9); // two refused in a row
    tx.send(new Uint8Array([7]), "::1", 9);
    tx.send(new Uint8Array([8]), "127.0.0.1", rx.port);
    tx.flush();
    for (let i = 0; i < 100 && got.length < 4; i++) await Bun.sleep(10);
    await Bun.sleep(50); // nothing more (no duplicates)
    expect(got).toEqual([1, 3, 5, 8]);
    expect(tx.sendErrors).toBe(4);
    expect(tx.sentDatagrams).toBe(4);
  } finally {
    rx.close();
    tx.close();
  }
});
