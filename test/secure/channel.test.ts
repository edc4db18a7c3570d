/**
 * The secure channel's state machine, in memory: handshake, records,
 * per-connection keys, identity binding, and every way a record can be bad.
 */
import { describe, expect, test } from "bun:test";
import { generateIdentity, verifySignature } from "../../src/crypto/identity.ts";
import {
  FrameType,
  MAX_RECORD_BODY,
  MAX_RECORD_PLAINTEXT,
  SecureChannel,
  SECURE_SIGN_CONTEXT,
  signTranscriptHash,
  decodeFrameHeader,
  SecureChannelError,
} from "../../src/crypto/secure-channel.ts";
import { addressOf } from "../../src/protocol/address.ts";
import { CLIENT_ADDRESS, CLIENT_PORT, failure, makePair, received, SERVER_ADDRESS, SERVER_PORT } from "./support.ts";

const text = (s: string) => new TextEncoder().encode(s);

function established() {
  const pair = makePair();
  pair.pump();
  expect(pair.client.channel.established).toBe(true);
  expect(pair.server.channel.established).toBe(true);
  return pair;
}

describe("handshake", () => {
  test("three messages; both sides end with the same channel id; data flows both ways", () => {
    const p = established();
    expect(p.client.wire.map((w) => w[0])).toEqual([FrameType.ClientHello, FrameType.ClientAuth]);
    expect(p.server.wire.map((w) => w[0])).toEqual([FrameType.ServerHello]);
    expect(p.client.wire[0]!.length).toBe(4 + 33);
    expect(p.server.wire[0]!.length).toBe(4 + 96);
    expect(p.client.wire[1]!.length).toBe(4 + 64);
    expect(Buffer.from(p.client.channel.channelId!).equals(Buffer.from(p.server.channel.channelId!))).toBe(true);
    p.client.channel.seal(text("hello server"));
    p.server.channel.seal(text("hello client"));
    p.pump();
    expect(received(p.server)).toBe("hello server");
    expect(received(p.client)).toBe("hello client");
  });

  test("each side asks for exactly one signature, over the fixed context and a 32-byte hash", () => {
    const p = established();
    for (const side of [p.client, p.server]) {
      const signs = side.events.filter((e) => e.type === "sign");
      expect(signs.length).toBe(1);
      const hash = (signs[0] as { hash: Uint8Array }).hash;
      expect(hash.length).toBe(32);
      const sig = signTranscriptHash(side.identity, hash);
      const message = Buffer.concat([Buffer.from(SECURE_SIGN_CONTEXT), hash]);
      expect(verifySignature(side.identity.publicKey, message, sig)).toBe(true);
    }
    const c = p.client.events.find((e) => e.type === "sign") as { hash: Uint8Array };
    const s = p.server.events.find((e) => e.type === "sign") as { hash: Uint8Array };
    expect(Buffer.from(c.hash).equals(Buffer.from(s.hash))).toBe(false);
  });

  test("every connection has its own keys: same identities, same plaintext, different ciphertext and channel id", () => {
    const a = makePair();
    const b = makePair({ clientIdentity: a.client.identity, serverIdentity: a.server.identity });
    for (const p of [a, b]) {
      p.pump();
      p.client.channel.seal(text("the same secret payload"));
    }
    const ca = a.client.channel.takeOutput();
    const cb = b.client.channel.takeOutput();
    expect(ca.length).toBe(cb.length);
    // Header and sequence number match (both are the first record); the sealed bytes do not.
    expect(Buffer.from(ca.subarray(0, 12)).equals(Buffer.from(cb.subarray(0, 12)))).toBe(true);
    expect(Buffer.from(ca.subarray(12)).equals(Buffer.from(cb.subarray(12)))).toBe(false);
    expect(Buffer.from(a.client.channel.channelId!).equals(Buffer.from(b.client.channel.channelId!))).toBe(false);
    // A record of one connection does not open in the other.
    b.server.channel.receive(ca);
    expect(b.server.channel.error?.code).toBe("bad_record_mac");
  });

  test("the directions use different keys: a record reflected back to its sender does not open", () => {
    const p = established();
    p.client.channel.seal(text("ping"));
    const record = p.client.channel.takeOutput();
    p.client.channel.receive(record);
    expect(p.client.channel.error?.code).toBe("bad_record_mac");
  });

  test("a server signing with another identity is rejected by the client (auth_failed), and the server is told", () => {
    const p = makePair({ serverSigner: generateIdentity() });
    p.pump();
    expect(failure(p.client)).toBe("auth_failed");
    expect(p.client.channel.error!.message).toContain("server's signature");
    expect(failure(p.server)).toBe("peer_alert");
    expect(p.server.channel.error!.alert).toBe("auth_failed");
    // The client never signed anything for this server.
    expect(p.client.events.some((e) => e.type === "sign")).toBe(false);
  });

  test("a client signing with another identity is rejected by the server, and the client is told", () => {
    const p = makePair({ clientSigner: generateIdentity() });
    p.pump();
    expect(failure(p.server)).toBe("auth_failed");
    expect(failure(p.client)).toBe("peer_alert");
    expect(p.client.channel.error!.alert).toBe("auth_failed");
    expect(p.server.events.some((e) => e.type === "established")).toBe(false);
  });

  test("a client pinning a different key for the server address rejects the real server", () => {
    const p = makePair({ serverKeyAtClient: generateIdentity().publicKey });
    p.pump();
    expect(failure(p.client)).toBe("auth_failed");
  });

  test("a tampered transcript fails: the sides disagree on the client's address, the port, or the server", () => {
    const variants = [
      { clientView: { client: { address: addressOf(0, 0x99), port: CLIENT_PORT } } },
      { serverView: { client: { address: CLIENT_ADDRESS, port: CLIENT_PORT + 1 } } },
      { clientView: { server: { address: SERVER_ADDRESS, port: 80 } } },
      { serverView: { server: { address: addressOf(0, 0x23), port: SERVER_PORT } } },
    ];
    for (const v of variants) {
      const p = makePair(v);
      p.pump();
      expect(p.client.channel.established && p.server.channel.established).toBe(false);
      expect([failure(p.client), failure(p.server)]).toContain("auth_failed");
    }
  });

  test("a flipped bit in any handshake message fails the handshake", () => {
    for (const target of ["clientHello", "serverHello", "clientAuth"] as const) {
      for (const bit of [0, 9, 40, 200, 500]) {
        const p = makePair();
        const hello = p.client.channel.takeOutput();
        const tamper = (b: Uint8Array) => {
          const c = b.slice();
          const i = Math.floor(bit / 8) % c.length;
          c[i]! ^= 1 << bit % 8;
          return c;
        };
        p.server.channel.receive(target === "clientHello" ? tamper(hello) : hello);
        let e;
        while ((e = p.server.channel.pollEvent())) if (e.type === "sign") p.server.channel.provideSignature(signTranscriptHash(p.server.identity, e.hash));
        const sh = p.server.channel.takeOutput();
        p.client.channel.receive(target === "serverHello" ? tamper(sh) : sh);
        while ((e = p.client.channel.pollEvent())) if (e.type === "sign") p.client.channel.provideSignature(signTranscriptHash(p.client.identity, e.hash));
        const ca = p.client.channel.takeOutput();
        if (ca.length > 0) p.server.channel.receive(target === "clientAuth" ? tamper(ca) : ca);
        expect(p.server.channel.established && p.client.channel.established).toBe(false);
      }
    }
  });

  test("an unsupported version is refused with an alert", () => {
    const server = new SecureChannel({ role: "server", client: { address: CLIENT_ADDRESS, port: 1 }, server: { address: SERVER_ADDRESS, port: 443 }, peerIdentityKey: generateIdentity().publicKey });
    const hello = new Uint8Array(37);
    hello.set([FrameType.ClientHello, 0, 0, 33, 2]);
    server.receive(hello);
    expect(server.error?.code).toBe("unsupported_version");
    expect([...server.takeOutput()]).toEqual([FrameType.Alert, 0, 0, 1, 1]);
  });

  test("a small-order ephemeral key is refused (no all-zero shared secret)", () => {
    const server = new SecureChannel({ role: "server", client: { address: CLIENT_ADDRESS, port: 1 }, server: { address: SERVER_ADDRESS, port: 443 }, peerIdentityKey: generateIdentity().publicKey });
    const hello = new Uint8Array(37);
    hello.set([FrameType.ClientHello, 0, 0, 33, 1]); // public key: all zeros (order 1)
    server.receive(hello);
    expect(server.error?.code).toBe("bad_key");
    expect(server.pollEvent()?.type).toBe("failed");
  });

  test("bytes arriving in single-byte pieces make the same handshake and records", () => {
    const p = makePair();
    const drip = (from: SecureChannel, to: SecureChannel) => {
      const out = from.takeOutput();
      for (const b of out) to.receive(new Uint8Array([b]));
    };
    const sign = (side: typeof p.client) => {
      let e;
      while ((e = side.channel.pollEvent())) {
        side.events.push(e);
        if (e.type === "sign") side.channel.provideSignature(signTranscriptHash(side.identity, e.hash));
      }
    };
    drip(p.client.channel, p.server.channel);
    sign(p.server);
    drip(p.server.channel, p.client.channel);
    sign(p.client);
    p.client.channel.seal(text("x".repeat(40_000)));
    drip(p.client.channel, p.server.channel);
    sign(p.server);
    expect(p.server.channel.established).toBe(true);
    expect(received(p.server)).toBe("x".repeat(40_000));
    expect(p.server.channel.bufferedBytes).toBe(0);
  });
});

describe("records", () => {
  test("large writes are split into records of at most 16 KiB and arrive intact", () => {
    const p = established();
    const big = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
    p.client.channel.seal(big);
    const out = p.client.channel.takeOutput();
    let at = 0;
    let n = 0;
    while (at < out.length) {
      const h = decodeFrameHeader(out.subarray(at, at + 4));
      if (h instanceof SecureChannelError) throw h;
      expect(h.length).toBeLessThanOrEqual(MAX_RECORD_BODY);
      at += 4 + h.length;
      n++;
    }
    expect(n).toBe(Math.ceil(100_000 / MAX_RECORD_PLAINTEXT));
    p.server.channel.receive(out);
    const chunks: Uint8Array[] = [];
    let e;
    while ((e = p.server.channel.pollEvent())) if (e.type === "data") chunks.push(e.data);
    expect(Buffer.concat(chunks).equals(Buffer.from(big))).toBe(true);
  });

  test("End is authenticated half-close: the other direction keeps working", () => {
    const p = established();
    p.client.channel.seal(text("request"));
    p.client.channel.end();
    p.pump();
    expect(p.server.events.map((e) => e.type).slice(-2)).toEqual(["data", "end"]);
    expect(p.server.channel.peerEnded).toBe(true);
    p.server.channel.seal(text("response"));
    p.server.channel.end();
    p.pump();
    expect(received(p.client)).toBe("response");
    p.client.channel.finish();
    p.server.channel.finish();
    expect(p.client.channel.error).toBeNull();
    expect(p.server.channel.error).toBeNull();
    expect(() => p.client.channel.seal(text("late"))).toThrow();
  });

  function record(p: ReturnType<typeof established>, s = "payload"): Uint8Array {
    p.client.channel.seal(text(s));
    return p.client.channel.takeOutput();
  }

  test("every single-bit flip of a record (header, sequence, ciphertext, tag) fails cleanly", () => {
    const base = established();
    const r = record(base);
    for (let bit = 0; bit < r.length * 8; bit++) {
      const p = established();
      const genuine = record(p);
      expect(genuine.length).toBe(r.length);
      const bad = genuine.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      p.server.channel.receive(bad);
      p.server.channel.finish(); // a longer length field waits for more: the end of the stream settles it
      expect(p.server.channel.error).not.toBeNull();
      expect(received(p.server)).toBe("");
      if (bit >= 32 * 8) break; // the rest is covered more cheaply below
    }
    // Ciphertext and tag bits on one channel pair: each flip must fail.
    const r2 = record(base, "p".repeat(100));
    for (let bit = 12 * 8; bit < r2.length * 8; bit += 3) {
      const p = established();
      const genuine = record(p, "p".repeat(100));
      const bad = genuine.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      p.server.channel.receive(bad);
      expect(p.server.channel.error?.code).toBe("bad_record_mac");
    }
  });

  test("a replayed record is refused as a replay; a skipped one as out of order", () => {
    const p = established();
    const first = record(p, "one");
    const second = record(p, "two");
    p.server.channel.receive(first);
    p.server.channel.receive(first);
    expect(p.server.channel.error?.code).toBe("replay");
    expect(received(p.server)).toBe("one");
    const q = established();
    record(q, "one");
    const later = record(q, "two");
    q.server.channel.receive(later);
    expect(q.server.channel.error?.code).toBe("out_of_order");
    expect(second.length).toBe(first.length);
  });

  test("a record moved to another position with its sequence number rewritten does not authenticate", () => {
    const p = established();
    const first = record(p, "one");
    const second = record(p, "two");
    const moved = second.slice();
    moved.set(first.subarray(4, 12), 4); // claim sequence 0
    p.server.channel.receive(moved);
    expect(p.server.channel.error?.code).toBe("bad_record_mac");
  });

  test("a record longer than the limit fails from its header alone, before its body arrives", () => {
    const p = established();
    const header = new Uint8Array([FrameType.Data, 0, 0xff, 0xff]);
    p.server.channel.receive(header);
    expect(p.server.channel.error?.code).toBe("record_too_large");
    expect(p.server.channel.bufferedBytes).toBe(0);
    const q = established();
    q.server.channel.receive(new Uint8Array([FrameType.Data, 0, (MAX_RECORD_BODY + 1) >> 8, (MAX_RECORD_BODY + 1) & 0xff]));
    expect(q.server.channel.error?.code).toBe("record_too_large");
    const ok = established();
    ok.server.channel.receive(new Uint8Array([FrameType.Data, 0, MAX_RECORD_BODY >> 8, MAX_RECORD_BODY & 0xff]));
    expect(ok.server.channel.error).toBeNull();
    expect(ok.server.channel.bufferedBytes).toBe(4);
  });

  test("a record too short to hold a sequence number and tag is a bad frame", () => {
    const p = established();
    p.server.channel.receive(new Uint8Array([FrameType.Data, 0, 0, 23, ...new Array(23).fill(0)]));
    expect(p.server.channel.error?.code).toBe("bad_frame");
  });

  test("a stream that ends in the middle of a record, or without End, is truncated", () => {
    const p = established();
    const r = record(p);
    p.server.channel.receive(r.subarray(0, r.length - 1));
    p.server.channel.finish();
    expect(p.server.channel.error?.code).toBe("truncated");
    const q = established();
    q.server.channel.receive(record(q));
    q.server.channel.finish();
    expect(q.server.channel.error?.code).toBe("truncated");
    expect(received(q.server)).toBe("payload"); // what authenticated before the cut was delivered
  });

  test("records after End, data before the handshake, handshake frames after it, and alerts after it are refused", () => {
    const p = established();
    p.client.channel.end();
    const end = p.client.channel.takeOutput();
    p.server.channel.receive(end);
    // A genuine-looking record after End (sequence 1) is refused without decryption.
    const fake = new Uint8Array(4 + 24 + 5);
    fake.set([FrameType.Data, 0, 0, 29]);
    p.server.channel.receive(fake);
    expect(p.server.channel.error?.code).toBe("unexpected_message");

    const fresh = makePair();
    const data = new Uint8Array(4 + 24);
    data.set([FrameType.Data, 0, 0, 24]);
    fresh.server.channel.receive(data);
    expect(fresh.server.channel.error?.code).toBe("unexpected_message");

    const q = established();
    q.server.channel.receive(q.client.wire[0]!); // the ClientHello again
    expect(q.server.channel.error?.code).toBe("unexpected_message");

    const r = established();
    r.server.channel.seal(text("first record"));
    r.pump();
    r.client.channel.receive(new Uint8Array([FrameType.Alert, 0, 0, 1, 2]));
    expect(r.client.channel.error?.code).toBe("unexpected_message");
    const s = established();
    s.server.channel.receive(new Uint8Array([FrameType.Alert, 0, 0, 1, 2]));
    expect(s.server.channel.error?.code).toBe("unexpected_message");
  });

  test("once failed, a channel ignores input and refuses to seal", () => {
    const p = established();
    p.server.channel.receive(new Uint8Array([0x99, 0, 0, 0]));
    expect(p.server.channel.error?.code).toBe("unexpected_message");
    p.server.channel.receive(new Uint8Array(1000));
    expect(p.server.channel.bufferedBytes).toBe(0);
    expect(() => p.server.channel.seal(text("x"))).toThrow();
  });
});
