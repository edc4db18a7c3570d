import { describe, expect, test } from "bun:test";
import { bytesToHex, hexToBytes } from "../../src/crypto/bytes.ts";
import { x25519PublicFromPrivate } from "../../src/crypto/keys.ts";
import {
  CipherState,
  HandshakeState,
  PATTERN_IK,
  PATTERN_NN,
  PATTERN_XX,
  protocolName,
  type HandshakePattern,
} from "../../src/crypto/noise.ts";
import { NOISE_VECTORS, type NoiseVector } from "./fixtures/noise-vectors.ts";

const PATTERNS: Record<string, HandshakePattern> = { IK: PATTERN_IK, XX: PATTERN_XX, NN: PATTERN_NN };

function patternOf(v: NoiseVector): HandshakePattern {
  const name = v.name.split("_")[1]!;
  const pattern = PATTERNS[name];
  if (!pattern) throw new Error(`no pattern ${name}`);
  return pattern;
}

function states(v: NoiseVector): [HandshakeState, HandshakeState] {
  const pattern = patternOf(v);
  const noRandom = () => {
    throw new Error("vector runs must not draw randomness");
  };
  const initiator = new HandshakeState({
    pattern,
    initiator: true,
    prologue: hexToBytes(v.prologue),
    staticKey: v.initStatic ? hexToBytes(v.initStatic) : undefined,
    ephemeralKey: hexToBytes(v.initEphemeral),
    remoteStatic: v.initRemoteStatic ? hexToBytes(v.initRemoteStatic) : undefined,
    random: noRandom,
  });
  const responder = new HandshakeState({
    pattern,
    initiator: false,
    prologue: hexToBytes(v.prologue),
    staticKey: v.respStatic ? hexToBytes(v.respStatic) : undefined,
    ephemeralKey: hexToBytes(v.respEphemeral),
    random: noRandom,
  });
  return [initiator, responder];
}

describe("Noise test vectors (cacophony)", () => {
  for (const v of NOISE_VECTORS) {
    test(v.name, () => {
      const pattern = patternOf(v);
      expect(protocolName(pattern)).toBe(v.name);
      if (v.initRemoteStatic && v.respStatic) {
        expect(bytesToHex(x25519PublicFromPrivate(hexToBytes(v.respStatic)))).toBe(v.initRemoteStatic);
      }
      const [initiator, responder] = states(v);
      const handshakeLength = pattern.messages.length;
      let i = 0;
      for (; i < handshakeLength; i++) {
        const message = v.messages[i]!;
        const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
        const wire = writer.writeMessage(hexToBytes(message.payload));
        expect(bytesToHex(wire)).toBe(message.ciphertext);
        const read = reader.readMessage(wire);
        expect(read.ok).toBe(true);
        if (read.ok) expect(bytesToHex(read.value)).toBe(message.payload);
      }
      expect(initiator.isComplete()).toBe(true);
      expect(responder.isComplete()).toBe(true);
      expect(bytesToHex(initiator.handshakeHash())).toBe(bytesToHex(responder.handshakeHash()));

      const [i1, i2] = initiator.split();
      const [r1, r2] = responder.split();
      expect(bytesToHex(i1)).toBe(bytesToHex(r1));
      expect(bytesToHex(i2)).toBe(bytesToHex(r2));
      expect(bytesToHex(i1)).not.toBe(bytesToHex(i2));
      const send = { initiator: new CipherState(), responder: new CipherState() };
      const receive = { initiator: new CipherState(), responder: new CipherState() };
      send.initiator.initializeKey(i1);
      receive.responder.initializeKey(r1);
      send.responder.initializeKey(r2);
      receive.initiator.initializeKey(i2);
      const none = new Uint8Array(0);
      for (; i < v.messages.length; i++) {
        const message = v.messages[i]!;
        const fromInitiator = i % 2 === 0;
        const sender = fromInitiator ? send.initiator : send.responder;
        const receiver = fromInitiator ? receive.responder : receive.initiator;
        const wire = sender.encryptWithAd(none, hexToBytes(message.payload));
        expect(bytesToHex(wire)).toBe(message.ciphertext);
        const plain = receiver.decryptWithAd(none, wire);
        expect(plain && bytesToHex(plain)).toBe(message.payload);
      }
    });
  }
});

describe("HandshakeState", () => {
  const ik = NOISE_VECTORS[0]!;

  test("a tampered message fails and leaves the state as it was", () => {
    const [initiator, responder] = states(ik);
    const wire = initiator.writeMessage(new Uint8Array(4));
    for (let at = 0; at < wire.length; at++) {
      const bad = wire.slice();
      bad[at]! ^= 0x01;
      expect(responder.readMessage(bad).ok).toBe(false);
    }
    const read = responder.readMessage(wire);
    expect(read.ok).toBe(true);
    // The response is also robust: forged responses do not spoil the initiator's state.
    const reply = responder.writeMessage(new Uint8Array(0));
    const forged = reply.slice();
    forged[40]! ^= 0x10;
    expect(initiator.readMessage(forged).ok).toBe(false);
    expect(initiator.readMessage(reply).ok).toBe(true);
    expect(bytesToHex(initiator.split()[0])).toBe(bytesToHex(responder.split()[0]));
  });

  test("truncated messages fail without throwing", () => {
    const [initiator] = states(ik);
    const wire = initiator.writeMessage(new Uint8Array(0));
    for (let length = 0; length < wire.length; length++) {
      const [, responder] = states(ik);
      expect(responder.readMessage(wire.subarray(0, length)).ok).toBe(false);
    }
  });

  test("a low-order ephemeral key is refused", () => {
    const [initiator] = states(ik);
    const wire = initiator.writeMessage(new Uint8Array(0));
    const bad = wire.slice();
    bad.fill(0, 0, 32);
    const [, responder] = states(ik);
    const result = responder.readMessage(bad);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe("bad_key");
  });

  test("a different prologue makes the handshake fail", () => {
    const pattern = PATTERN_IK;
    const rs = hexToBytes(ik.respStatic!);
    const a = new HandshakeState({
      pattern,
      initiator: true,
      prologue: new Uint8Array([1]),
      staticKey: hexToBytes(ik.initStatic!),
      remoteStatic: x25519PublicFromPrivate(rs),
    });
    const b = new HandshakeState({ pattern, initiator: false, prologue: new Uint8Array([2]), staticKey: rs });
    expect(b.readMessage(a.writeMessage(new Uint8Array(0))).ok).toBe(false);
  });

  test("writing out of turn throws (programmer error)", () => {
    const [initiator, responder] = states(ik);
    expect(() => responder.writeMessage(new Uint8Array(0))).toThrow();
    initiator.writeMessage(new Uint8Array(0));
    expect(() => initiator.writeMessage(new Uint8Array(0))).toThrow();
    expect(initiator.readMessage(new Uint8Array(100)).ok).toBe(false);
  });
});
