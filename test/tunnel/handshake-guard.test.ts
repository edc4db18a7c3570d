/**
 * Handshake floods against a public node's router, in virtual time: junk
 * initiations with a valid mac1 (anyone can compute it from the registered
 * key), a careful attacker that reads cookie replies, relayed floods and
 * spoofed known endpoints. Known peers keep their sessions and rekey; a
 * stranger that follows the protocol still gets in; Diffie-Hellman work and
 * replies stay within the budgets of handshake-guard.ts.
 */
import { describe, expect, test } from "bun:test";
import { computeMac2, CookieJar } from "../../src/crypto/cookie.ts";
import { remoteHandshakeKeys } from "../../src/crypto/handshake.ts";
import { TimestampClock } from "../../src/crypto/timestamp.ts";
import { addressOf, type Address } from "../../src/protocol/address.ts";
import { decodeCookieReply, INITIATION_MAC2_OFFSET, TunnelMessage } from "../../src/protocol/tunnel-frame.ts";
import { DEFAULT_HANDSHAKE_LIMITS as L, HandshakeGuard, sourceAddress } from "../../src/tunnel/handshake-guard.ts";
import { TunnelRouter } from "../../src/tunnel/router.ts";
import { seededBytes, testIdentity } from "../crypto/support.ts";
import { junkFrames } from "./flood-sender.ts";
import { pilotPacket } from "./harness.ts";

interface Node {
  address: Address;
  endpoint: string;
  identity: ReturnType<typeof testIdentity>;
  router: TunnelRouter<string>;
}

let wall = 1_700_000_000_000;

function node(n: number, endpoint: string, preferred: Address[] = []): Node {
  const identity = testIdentity(n);
  const address = addressOf(0, 100 + n);
  const router = new TunnelRouter<string>({
    localAddress: address,
    identity,
    admit: () => "accept",
    random: seededBytes(n * 31),
    timestamps: new TimestampClock(() => wall),
    preferred: (a) => preferred.includes(a),
  });
  return { address, endpoint, identity, router };
}

/** Delivers everything the nodes sent to each other; frames to other endpoints go to `elsewhere`. */
function pump(nodes: Node[], now: number, elsewhere: (frame: Uint8Array, to: string) => void = () => {}): void {
  const byEndpoint = new Map(nodes.map((n) => [n.endpoint, n]));
  for (let round = 0; round < 20; round++) {
    let moved = 0;
    for (const from of nodes) {
      for (const t of from.router.takeTransmits()) {
        moved++;
        const to = byEndpoint.get(t.endpoint);
        if (to) to.router.receive(t.frame, from.endpoint, now);
        else elsewhere(t.frame, t.endpoint);
      }
    }
    if (moved === 0) return;
  }
}

/** The victim's shell: looks up an unknown initiator's key and answers it. */
function introduce(victim: Node, all: Node[], now: number): void {
  for (const u of victim.router.takeUnknownInitiators()) {
    const who = all.find((x) => x.address === u.address);
    if (!who) continue;
    victim.router.addPeer(u.address, who.identity.publicKey, null, now);
    victim.router.acceptPending(u, now);
  }
}

const text = (p: Uint8Array) => new TextDecoder().decode(p.subarray(34));

describe("handshake floods against a public node", () => {
  test("40k junk initiations/s for 2 s: a few hundred get DH work, the known peer rekeys, a stranger that follows the protocol gets in", () => {
    const victim = node(1, "192.0.2.1:4000");
    const friend = node(2, "192.0.2.2:4000");
    const stranger = node(3, "203.0.113.9:6000"); // same address as the attacker, another port
    friend.router.addPeer(victim.address, victim.identity.publicKey, victim.endpoint, 0);
    victim.router.addPeer(friend.address, friend.identity.publicKey, friend.endpoint, 0);
    friend.router.send(victim.address, pilotPacket(friend.address, victim.address, "hello"), 0);
    pump([victim, friend], 0);
    expect(victim.router.takeDelivered().map((d) => text(d.packet))).toEqual(["hello"]);

    const junk = junkFrames(victim.identity.publicKey, 256);
    const attacker = "203.0.113.9:5000";
    let cookiesToAttacker = 0;
    let friendRekeyed = false;
    let strangerIn = false;
    const delivered: string[] = [];
    for (let i = 0; i < 80_000; i++) {
      const now = 10 + i * 0.025; // 40 000 per second
      victim.router.receive(junk[i % junk.length]!, attacker, now);
      if (i % 400 === 0) {
        // every 10 ms: the friend talks, and at 500 ms it starts a new handshake (a rekey)
        if (i === 20_000) friend.router.rehandshake(victim.address, now);
        if (i === 30_000) stranger.router.addPeer(victim.address, victim.identity.publicKey, victim.endpoint, now);
        if (i >= 30_000 && !strangerIn) stranger.router.send(victim.address, pilotPacket(stranger.address, victim.address, "let me in"), now);
        friend.router.send(victim.address, pilotPacket(friend.address, victim.address, `ping ${i}`), now);
        victim.router.tick(now);
        stranger.router.tick(now);
        introduce(victim, [friend, stranger], now);
        pump([victim, friend, stranger], now, (frame, to) => {
          if (to === attacker && frame[0] === TunnelMessage.CookieReply) cookiesToAttacker++;
        });
        introduce(victim, [friend, stranger], now);
        pump([victim, friend, stranger], now, (frame, to) => {
          if (to === attacker && frame[0] === TunnelMessage.CookieReply) cookiesToAttacker++;
        });
        for (const d of victim.router.takeDelivered()) {
          if (d.from === friend.address) delivered.push(text(d.packet));
          if (d.from === stranger.address) strangerIn = true;
        }
        if (i > 20_000 && friend.router.peer(victim.address)!.stats.handshakesCompleted >= 2) friendRekeyed = true;
      }
    }
    const s = victim.router.stats;
    // DH only before the load was noticed: about one second's threshold (+ the friend and the stranger).
    expect(s.initiationsDecrypted).toBeLessThanOrEqual(L.loadThreshold + 10);
    // The attacker's one address:port gets its cookie budget, no more.
    expect(cookiesToAttacker).toBeLessThanOrEqual(L.cookiePerSourceBurst + 2 * L.cookiePerSourceRate + 1);
    expect(s.throttledInitiation).toBeGreaterThan(70_000);
    expect(delivered.length).toBe(200); // every one of the friend's packets
    expect(friendRekeyed).toBe(true);
    expect(strangerIn).toBe(true);
    // The stranger needed a cookie: it was under load when it came.
    expect(stranger.router.peer(victim.address)!.stats.cookiesReceived).toBe(1);
  });

  test("a careful attacker that reads cookies and sends mac2 is held to its address's budget", () => {
    const victim = node(4, "192.0.2.4:4000");
    const junk = junkFrames(victim.identity.publicKey, 64);
    const jar = new CookieJar(remoteHandshakeKeys(victim.identity.publicKey).staticPublic);
    let cookie: Uint8Array | null = null;
    for (let i = 0; i < 40_000; i++) {
      const now = i * 0.05; // 20 000 per second for 2 s, from 64 ports of one address
      const port = 5000 + (i % 64);
      const frame = junk[i % junk.length]!.slice();
      jar.stamp(frame, now);
      if (cookie) frame.set(computeMac2(cookie, frame), INITIATION_MAC2_OFFSET);
      victim.router.receive(frame, `203.0.113.10:${port}`, now);
      for (const t of victim.router.takeTransmits()) {
        const r = decodeCookieReply(t.frame);
        // Cookies are bound to address and port: the attacker keeps the one for port 5000.
        if (r.ok && t.endpoint === "203.0.113.10:5000" && jar.consumeReply(r.value, now).ok) cookie = jar["cookie" as never];
      }
    }
    const s = victim.router.stats;
    expect(s.initiationsDecrypted).toBeLessThanOrEqual(L.loadThreshold + L.perAddressBurst + 2 * L.perAddressRate + 1);
    expect(cookie).not.toBeNull();
    // mac2 did get some through, about the address's rate beyond what came before the load was noticed.
    expect(s.initiationsDecrypted).toBeGreaterThan(L.strangerBurst + L.perAddressRate);
  });

  test("relayed initiations need no cookie (the beacon vouches for the sender) but each relayed node has a budget", () => {
    const victim = node(5, "192.0.2.5:4000");
    const junk = junkFrames(victim.identity.publicKey, 64);
    for (let i = 0; i < 20_000; i++) victim.router.receive(junk[i % 64]!, "relay:77", i * 0.1, addressOf(0, 77));
    const s = victim.router.stats;
    expect(s.cookieRepliesSent).toBe(0);
    expect(s.initiationsDecrypted).toBeLessThanOrEqual(L.perAddressBurst + 2 * L.perAddressRate + 1);
  });

  test("junk from a spoofed known endpoint uses that endpoint's small budget, then gets cookies the real peer ignores; the peer is unharmed", () => {
    const victim = node(6, "192.0.2.6:4000");
    const friend = node(7, "192.0.2.7:4000");
    friend.router.addPeer(victim.address, victim.identity.publicKey, victim.endpoint, 0);
    victim.router.addPeer(friend.address, friend.identity.publicKey, friend.endpoint, 0);
    friend.router.send(victim.address, pilotPacket(friend.address, victim.address, "hello"), 0);
    pump([victim, friend], 0);
    victim.router.takeDelivered();
    const junk = junkFrames(victim.identity.publicKey, 64);
    for (let i = 0; i < 4_000; i++) {
      const now = 1 + i * 0.25;
      victim.router.receive(junk[i % 64]!, friend.endpoint, now); // spoofed source
      if (i % 40 === 0) {
        friend.router.send(victim.address, pilotPacket(friend.address, victim.address, "still here"), now);
        pump([victim, friend], now);
      }
    }
    expect(victim.router.takeDelivered().length).toBe(100);
    expect(victim.router.stats.initiationsDecrypted).toBeLessThanOrEqual(L.knownPerSourceBurst + L.knownPerSourceRate + L.loadThreshold);
    expect(friend.router.stats.unexpectedCookieReply).toBeGreaterThan(0);
  });
});

describe("HandshakeGuard", () => {
  test("sources are counted by IPv4 address, IPv6 /64 or relayed node", () => {
    expect(sourceAddress("198.51.100.7:4000")).toBe("198.51.100.7");
    expect(sourceAddress("[2001:db8:1:2:3:4:5:6]:4000")).toBe("2001:db8:1:2::/64");
    expect(sourceAddress("[2001:db8::1]:4000")).toBe("2001:db8:0:0::/64");
    expect(sourceAddress("[::ffff:198.51.100.7]:4000")).toBe("198.51.100.7");
    expect(sourceAddress("relay:42")).toBe("relay:42");
  });

  test("below the load threshold no cookie is asked for; above it, for a second after", () => {
    const g = new HandshakeGuard({ loadThreshold: 10, loadHold: 1000 });
    const how = { known: false, relayed: false, hasMac2: () => false };
    for (let i = 0; i < 10; i++) expect(g.admit(`10.0.0.${i}:1`, i, how)).toBe("process");
    expect(g.underLoad(10)).toBe(false);
    expect(g.admit("10.0.0.99:1", 10, how)).toBe("cookie");
    expect(g.underLoad(1009)).toBe(true);
    expect(g.underLoad(1011)).toBe(false);
    expect(g.admit("10.0.0.100:1", 1500, how)).toBe("process");
  });

  test("tables stay bounded whatever the number of sources", () => {
    const g = new HandshakeGuard({ loadThreshold: 0, maxSources: 100 });
    for (let i = 0; i < 10_000; i++) g.admit(`10.${i >> 8}.${i & 255}.1:${i}`, i, { known: i % 2 === 0, relayed: false, hasMac2: () => i % 3 === 0 });
    expect(g.sourcesTracked).toBeLessThanOrEqual(300);
  });
});
