/**
 * The beacon over real UDP on 127.0.0.1: a discover gets the sender's
 * observed address back, signed by the rendezvous key.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createDiscover, discoverEndpoint, verifyDiscoverReply } from "../../src/beacon/discover.ts";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { decodeBeaconMessage, discoverReplySignedBytes, encodeDiscoverReply, encodeDiscoverReplyBody } from "../../src/protocol/beacon-message.ts";
import { keyBytes, startRendezvous, stopAll, type RendezvousProcess } from "../registry/helpers.ts";

let r: RendezvousProcess;
beforeAll(async () => {
  r = await startRendezvous();
});
afterAll(stopAll);

async function udp(onData: (data: Uint8Array) => void) {
  return Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: (_s, data) => onData(new Uint8Array(data)) } });
}

test("discover returns the observed 127.0.0.1:port with a valid signature", async () => {
  const replies: Uint8Array[] = [];
  const socket = await udp((d) => replies.push(d));
  try {
    const { nonce, datagram } = createDiscover();
    socket.send(datagram, r.beaconPort, "127.0.0.1");
    for (let i = 0; i < 100 && replies.length === 0; i++) await Bun.sleep(10);
    expect(replies.length).toBe(1);
    expect(replies[0]!.length).toBeLessThanOrEqual(datagram.length);
    const result = verifyDiscoverReply(replies[0]!, nonce, keyBytes(r.publicKey));
    expect(result).toEqual({ ok: true, value: { ip: "127.0.0.1", port: socket.port } });
    // The same reply does not verify for another nonce or another key.
    expect(verifyDiscoverReply(replies[0]!, createDiscover().nonce, keyBytes(r.publicKey)).ok).toBe(false);
    expect(verifyDiscoverReply(replies[0]!, nonce, generateIdentity().publicKey).ok).toBe(false);
    // A forged reply with a chosen address is refused.
    const forger = generateIdentity();
    const body = encodeDiscoverReplyBody({ nonce, ip: "203.0.113.9", port: 1 });
    const forged = encodeDiscoverReply(body, forger.sign(discoverReplySignedBytes(body)));
    const v = verifyDiscoverReply(forged, nonce, keyBytes(r.publicKey));
    expect(v.ok ? "ok" : v.error.code).toBe("bad_signature");
    // An altered genuine reply is refused.
    const altered = replies[0]!.slice();
    altered[3]! ^= 1; // the port
    expect(verifyDiscoverReply(altered, nonce, keyBytes(r.publicKey)).ok).toBe(false);
  } finally {
    socket.close();
  }
});

test("discoverEndpoint drives the exchange through the caller's socket", async () => {
  let handler: ((d: Uint8Array) => void) | undefined;
  const socket = await udp((d) => handler?.(d));
  try {
    const result = await discoverEndpoint({
      send: (bytes) => socket.send(bytes, r.beaconPort, "127.0.0.1"),
      listen: (h) => {
        handler = h;
        return () => (handler = undefined);
      },
      beaconKey: keyBytes(r.publicKey),
      intervalMs: 300,
    });
    expect(result).toEqual({ ip: "127.0.0.1", port: socket.port });
    expect(handler).toBeUndefined();
  } finally {
    socket.close();
  }
});

test("discoverEndpoint gives up after its attempts when nothing valid answers", async () => {
  const silent = await udp(() => {});
  let handler: ((d: Uint8Array) => void) | undefined;
  const socket = await udp((d) => handler?.(d));
  try {
    const started = Date.now();
    await expect(
      discoverEndpoint({
        send: (bytes) => socket.send(bytes, silent.port, "127.0.0.1"),
        listen: (h) => {
          handler = h;
          return () => (handler = undefined);
        },
        beaconKey: keyBytes(r.publicKey),
        attempts: 2,
        intervalMs: 100,
      }),
    ).rejects.toThrow("no valid beacon reply");
    expect(Date.now() - started).toBeLessThan(1000);
  } finally {
    socket.close();
    silent.close();
  }
});

test("garbage, tunnel frames and replies sent to the beacon get no answer", async () => {
  const replies: Uint8Array[] = [];
  const socket = await udp((d) => replies.push(d));
  try {
    const { datagram } = createDiscover();
    const short = datagram.subarray(0, 17); // an unpadded discover would amplify: refused
    for (const bad of [new Uint8Array([0x01, 1, 2, 3]), short, new Uint8Array([0x21, 4]), new Uint8Array(0x400).fill(0x20)]) {
      socket.send(bad, r.beaconPort, "127.0.0.1");
    }
    await Bun.sleep(150);
    expect(replies).toEqual([]);
    // ...and the beacon still answers a good discover.
    socket.send(datagram, r.beaconPort, "127.0.0.1");
    for (let i = 0; i < 100 && replies.length === 0; i++) await Bun.sleep(10);
    expect(decodeBeaconMessage(replies[0]!).ok).toBe(true);
  } finally {
    socket.close();
  }
});
