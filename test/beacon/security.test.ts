/**
 * The rendezvous path under attack (reference weakness 6): nobody can take
 * over a node's beacon entry, spoof a relay sender, push a daemon into relay
 * mode, or make it punch toward hosts it never asked about.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { generateIdentity } from "../../src/crypto/identity.ts";
import {
  appendSignature,
  BeaconType,
  CHALLENGE_SIZE,
  decodeBeaconMessage,
  encodePunchBody,
  encodePing,
  encodePunchRequest,
  encodeRegisterBody,
  encodeRelay,
  punchSignedBytes,
  REGISTER_SIZE,
  registerSignedBytes,
} from "../../src/protocol/beacon-message.ts";
import { addNode, until, world, type World } from "./harness.ts";

let w: World | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

/** A bare UDP socket for an attacker on 127.0.0.1. */
async function attackerSocket() {
  const got: { data: Uint8Array; port: number }[] = [];
  const socket = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: (_s, data, port) => void got.push({ data: new Uint8Array(data), port }) } });
  return { socket, got };
}

describe("beacon registrations", () => {
  test("a node's entry cannot be taken over: not with another key, not by replaying its own registration", async () => {
    w = await world();
    const victim = await addNode(w, 20);
    const entry = w.beacon.registrationOf(victim.id);
    expect(entry).toBe(`127.0.0.1:${victim.udp.port}`);
    const { socket, got } = await attackerSocket();
    try {
      const beaconPort = w.beacon.address.port;
      // 1. Claim the victim's id, signed with some other key (after getting a token for our address).
      const mallory = generateIdentity();
      const register = (token: Uint8Array, identity = mallory) => {
        const body = encodeRegisterBody({ node: victim.id, timestamp: Date.now(), nonce: new Uint8Array(16).fill(got.length + 1), token });
        return appendSignature(body, identity.sign(registerSignedBytes(w!.rendezvous.publicKey, body)));
      };
      socket.send(register(new Uint8Array(16)), beaconPort, "127.0.0.1");
      await until("a challenge", () => got.length === 1);
      const challenge = decodeBeaconMessage(got[0]!.data);
      expect(challenge.ok && challenge.value.type).toBe("challenge");
      expect(got[0]!.data.length).toBe(CHALLENGE_SIZE); // smaller than the register that drew it
      expect(CHALLENGE_SIZE).toBeLessThan(REGISTER_SIZE);
      const token = challenge.ok && challenge.value.type === "challenge" ? challenge.value.token : new Uint8Array(16);
      const refusedBefore = w.beacon.stats.badRegistrations;
      socket.send(register(token), beaconPort, "127.0.0.1");
      await until("the forged registration is refused", () => w!.beacon.stats.badRegistrations === refusedBefore + 1);
      expect(w.beacon.registrationOf(victim.id)).toBe(entry);

      // 2. Replay the victim's genuine registration (captured off the wire) from our address.
      let captured: Uint8Array | undefined;
      victim.onSend = (d) => {
        if (d[0] === BeaconType.Register) captured = d.slice();
        return d;
      };
      victim.beacon.refresh();
      await until("a captured registration", () => captured !== undefined);
      await Bun.sleep(50);
      const challengesBefore = w.beacon.stats.challenges;
      socket.send(captured!, beaconPort, "127.0.0.1");
      // Its token is bound to the victim's address: we only get a challenge, and nothing changes.
      await until("a challenge for the replay", () => w!.beacon.stats.challenges === challengesBefore + 1);
      expect(w.beacon.registrationOf(victim.id)).toBe(entry);
      expect(victim.beacon.available).toBe(true);
    } finally {
      socket.close();
    }
  });

  test("relay and punch requests from an address that registered nothing are refused", async () => {
    w = await world();
    const b = await addNode(w, 21, { public: true });
    const { socket, got } = await attackerSocket();
    try {
      const before = { relay: w.beacon.stats.relayRefused, punch: w.beacon.stats.punchesRefused, relayed: w.beacon.stats.relayedFrames };
      socket.send(encodeRelay(b.id, new Uint8Array(64).fill(4)), w.beacon.address.port, "127.0.0.1");
      socket.send(encodePunchRequest({ node: b.id, target: b.id + 1, nonce: new Uint8Array(16) }), w.beacon.address.port, "127.0.0.1");
      await until("both refused", () => w!.beacon.stats.relayRefused === before.relay + 1 && w!.beacon.stats.punchesRefused === before.punch + 1);
      expect(w.beacon.stats.relayedFrames).toBe(before.relayed);
      // The only answer is a 4-byte hint to register.
      await until("a hint", () => got.length > 0);
      expect(got.every((g) => g.data.length === 4 && g.data[0] === BeaconType.NotRegistered)).toBe(true);
    } finally {
      socket.close();
    }
  });

  test("pings: a pong goes only to a registered address, is never larger than the ping, and is rate-limited per node", async () => {
    w = await world();
    const a = await addNode(w, 25, { public: true });
    const ping = encodePing("ping", new Uint8Array(8).fill(7));
    expect(ping.length).toBe(12);
    expect(encodePing("pong", new Uint8Array(8)).length).toBe(ping.length);
    // From an address that registered nothing: at most the 4-byte hint to register, no pong.
    const { socket, got } = await attackerSocket();
    try {
      const pongs = w.beacon.stats.pongs;
      for (let i = 0; i < 20; i++) socket.send(ping, w.beacon.address.port, "127.0.0.1");
      await until("a hint", () => got.length > 0);
      await Bun.sleep(100); // let stray answers arrive (none are expected)
      expect(got.every((g) => g.data.length === 4 && g.data[0] === BeaconType.NotRegistered)).toBe(true);
      expect(got.length).toBeLessThanOrEqual(4); // the hints' burst
      expect(w.beacon.stats.pongs).toBe(pongs);
    } finally {
      socket.close();
    }
    // From the node's registered address (a flood of 50): answered within the per-node burst only.
    const pongs = w.beacon.stats.pongs;
    const limited = w.beacon.stats.rateLimited;
    for (let i = 0; i < 50; i++) a.udp.send(ping, "127.0.0.1", w.beacon.address.port);
    await until("the flood handled", () => w!.beacon.stats.pongs + w!.beacon.stats.rateLimited - pongs - limited >= 50, 10_000);
    expect(w.beacon.stats.pongs - pongs).toBeGreaterThan(0);
    expect(w.beacon.stats.pongs - pongs).toBeLessThanOrEqual(12); // burst 8, 4/s
  });
});

describe("relay", () => {
  test("the sender of a relayed frame is the node the beacon knows: frames of another node's session are dropped", async () => {
    w = await world();
    const a = await addNode(w, 22);
    const b = await addNode(w, 23, { public: true });
    const c = await addNode(w, 24, { public: true });
    // a talks to b directly; c (a registered attacker) captures one of a's frames to b ...
    let captured: Uint8Array | undefined;
    a.onSend = (d, _h, p) => {
      if (p === b.udp.port && d[0] === 0x04 && d.length > 32 && !captured) {
        captured = d.slice();
        return null; // ... and keeps it from arriving
      }
      return d;
    };
    await a.plane.ping(b.address, 1, 2000).catch(() => {});
    await until("a captured frame", () => captured !== undefined);
    // ... and relays it to b as its own. The beacon names c as the sender; b's session with a refuses it.
    const before = b.plane.router.stats.wrongRelaySender;
    c.beacon.relay(b.id, captured!);
    await until("the frame is refused", () => b.plane.router.stats.wrongRelaySender === before + 1);
    // It was not consumed: the genuine frame, arriving now from a's own address, is accepted (not a replay).
    const peer = b.plane.router.peer(a.address)!;
    const [received, replays] = [peer.stats.framesReceived, peer.stats.drops.replay];
    a.onSend = undefined;
    a.udp.send(captured!, "127.0.0.1", b.udp.port);
    await until("the genuine frame is accepted", () => peer.stats.framesReceived > received);
    await Bun.sleep(50);
    expect(peer.stats.drops.replay).toBe(replays);
  });

  test("nodes may relay only to nodes the registry lets them see, or that contacted them", async () => {
    w = await world();
    const a = await addNode(w, 25, { blockDirect: true });
    const b = await addNode(w, 26, { public: true, blockDirect: true });
    w.reach = (from, to) => !(from === a.id && to === b.id);
    const before = w.beacon.stats.relayRefused;
    await expect(a.plane.ping(b.address, 1, 800)).rejects.toBeDefined();
    expect(w.beacon.stats.relayRefused).toBeGreaterThan(before);
    expect(b.plane.router.peer(a.address)).toBeUndefined();
  });

  test("relayed frames never move a direct peer onto the relay", async () => {
    w = await world();
    const a = await addNode(w, 27, { public: true });
    const b = await addNode(w, 28, { public: true });
    await a.plane.ping(b.address, 1, 2000);
    await until("direct", () => b.plane.paths.describe(a.address)?.path === "direct" && a.plane.paths.describe(b.address)?.path === "direct");
    // a's next frame to b goes through the relay instead: authentic and the newest, but relayed.
    let diverted = 0;
    a.onSend = (d, _h, p) => {
      if (p === b.udp.port && d[0] === 0x04 && diverted === 0) {
        diverted++;
        a.beacon.relay(b.id, d);
        return null;
      }
      return d;
    };
    const delivered = b.plane.router.peer(a.address)!.stats.packetsDelivered;
    await a.plane.ping(b.address, 2, 2000);
    expect(diverted).toBe(1);
    expect(b.plane.router.peer(a.address)!.stats.packetsDelivered).toBeGreaterThan(delivered);
    expect(b.plane.router.peer(a.address)!.endpoint).toBe(`127.0.0.1:${a.udp.port}`);
    expect(b.plane.paths.describe(a.address)?.path).toBe("direct");
  });

  test("beacon messages from anywhere but the beacon are ignored (no forged relay, ack or punch)", async () => {
    w = await world();
    const a = await addNode(w, 29, { public: true });
    const b = await addNode(w, 30, { public: true });
    await a.plane.ping(b.address, 1, 2000);
    const { socket } = await attackerSocket();
    try {
      const deliver = new Uint8Array(8 + 32);
      deliver[0] = BeaconType.RelayDeliver;
      deliver[7] = b.id & 0xff;
      deliver[8] = 0x04;
      const before = a.plane.counters.foreignBeacon;
      const unknownIndex = a.plane.router.stats.unknownIndex;
      socket.send(deliver, a.udp.port, "127.0.0.1");
      await until("ignored", () => a.plane.counters.foreignBeacon === before + 1);
      // Dropped before the tunnel ever saw the frame inside; the path is unchanged.
      expect(a.plane.router.stats.unknownIndex).toBe(unknownIndex);
      expect(a.plane.paths.describe(b.address)?.path).toBe("direct");
    } finally {
      socket.close();
    }
  });
});

describe("punch commands", () => {
  /** A punch command as the beacon would sign it (tests hold the rendezvous key; attackers do not). */
  function punch(w: World, to: number, peer: number, endpoint: { ip: string; port: number }, signer = w.rendezvous, ts = Date.now()) {
    const body = encodePunchBody({ ...endpoint, to, peer, timestamp: ts, nonce: crypto.getRandomValues(new Uint8Array(16)) });
    return appendSignature(body, signer.sign(punchSignedBytes(body)));
  }

  test("a daemon punches only toward nodes it asked for or would admit, and only on signed, fresh commands", async () => {
    w = await world();
    const victim = await addNode(w, 31); // private, trusts nobody
    const counted: number[] = [];
    const target = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: (_s, d) => void counted.push(d.length) } });
    try {
      const from = { host: "127.0.0.1", port: w.beacon.address.port };
      const toTarget = { ip: "127.0.0.1", port: target.port };
      const deliver = (m: Uint8Array) => victim.beacon.receive(m, from.host, from.port);
      // Signed by someone else: refused.
      expect(deliver(punch(w, victim.id, 9999, toTarget, generateIdentity()))).toBe("dropped");
      // Stale: refused.
      expect(deliver(punch(w, victim.id, 9999, toTarget, w.rendezvous, Date.now() - 120_000))).toBe("dropped");
      // For another node: refused.
      expect(deliver(punch(w, victim.id + 1, 9999, toTarget))).toBe("dropped");
      // Genuine, but naming a node the victim never asked about and would not admit: ignored.
      expect(deliver(punch(w, victim.id, 9999, toTarget))).toBe("ok");
      await Bun.sleep(1200);
      victim.plane.paths.tick(performance.now());
      await Bun.sleep(50);
      expect(counted).toEqual([]);
      // A replay of a genuine command is refused.
      const once = punch(w, victim.id, 9999, toTarget);
      expect(deliver(once)).toBe("ok");
      expect(deliver(once)).toBe("dropped");
      // Positive control: a node it trusts gets punches.
      const friendly = await addNode(w, 32, { public: true });
      const victim2 = await addNode(w, 33, { trusts: [friendly.address] });
      expect(victim2.beacon.receive(punch(w, victim2.id, friendly.id, toTarget), from.host, from.port)).toBe("ok");
      await until("punch probes", () => counted.length >= 3, 3000);
    } finally {
      target.close();
    }
  });
});

