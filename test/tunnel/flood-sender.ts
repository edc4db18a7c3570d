/**
 * A stranger's handshake flood, run as its own process (so it does not share
 * the victim's or the test's event loop): initiations with a valid mac1 for
 * the victim's public key, from one UDP socket on 127.0.0.1, at a fixed rate
 * for a bounded time. Used by test/tunnel/handshake-flood.test.ts,
 * test/tunnel/introductions.test.ts and scripts/bench/handshake-flood.ts.
 *
 *   bun test/tunnel/flood-sender.ts '{"target":"127.0.0.1:4000","victimKey":"<base64 Ed25519>",
 *                                     "rate":40000,"seconds":3,"mode":"junk"}'
 *
 * Modes:
 *   junk    random Noise bytes under a valid mac1: costs an old victim one X25519 each
 *   claims  genuine Noise initiations from a throwaway key, each claiming a different
 *           unregistered node id (`count` of them, cycled): each one that gets through
 *           costs a victim a registry lookup
 * `cookies: true` makes the sender behave like a careful attacker that reads cookie
 * replies and adds mac2 (with the latest cookie) to everything it sends next.
 *
 * Prints one JSON line at the end: { sent, seconds, cookieReplies, otherReplies }.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { computeMac2, cookieReplyKey } from "../../src/crypto/cookie.ts";
import { createInitiation, localHandshakeKeys, remoteHandshakeKeys } from "../../src/crypto/handshake.ts";
import { hmacSha256 } from "../../src/crypto/hkdf.ts";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { TimestampClock } from "../../src/crypto/timestamp.ts";
import { addressOf, parseAddress, type Address } from "../../src/protocol/address.ts";
import { decodeCookieReply, INITIATION_MAC_OFFSET, INITIATION_MAC2_OFFSET, INITIATION_SIZE, MAC_SIZE, TunnelMessage } from "../../src/protocol/tunnel-frame.ts";

export interface FloodSpec {
  readonly target: string;
  readonly victimKey: string;
  readonly rate: number;
  readonly seconds: number;
  readonly mode: "junk" | "claims";
  /** claims: the victim's Pilot address (text form; it is in the Noise prologue). */
  readonly victimAddress?: string;
  /** claims: how many distinct node ids (default 12 000). */
  readonly count?: number;
  readonly cookies?: boolean;
}

export interface FloodResult {
  readonly sent: number;
  readonly seconds: number;
  readonly cookieReplies: number;
  readonly otherReplies: number;
}

export function junkFrames(victimKey: Uint8Array, n: number): Uint8Array[] {
  const remote = remoteHandshakeKeys(victimKey);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const frame = new Uint8Array(INITIATION_SIZE);
    crypto.getRandomValues(frame);
    frame[0] = TunnelMessage.Initiation;
    frame[1] = frame[2] = frame[3] = 0;
    frame.set(hmacSha256(remote.mac1Key, frame.subarray(0, INITIATION_MAC_OFFSET)).subarray(0, MAC_SIZE), INITIATION_MAC_OFFSET);
    frame.fill(0, INITIATION_MAC2_OFFSET); // no cookie: mac2 zero
    out.push(frame);
  }
  return out;
}

export function claimFrames(victimKey: Uint8Array, victim: Address, n: number): Uint8Array[] {
  const remote = remoteHandshakeKeys(victimKey);
  const local = localHandshakeKeys(generateIdentity());
  const clock = new TimestampClock();
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    // Ids far above anything a test registry assigns.
    const claimed = addressOf(0, 0x4000_0000 + ((Math.random() * 0x3fff_ffff) >>> 0));
    const { frame } = createInitiation({ local, remote, localAddress: claimed, remoteAddress: victim, localIndex: 1 + i, timestamp: clock.next() });
    out.push(frame);
  }
  return out;
}

/** The cookie in a reply to one of the initiations we sent (a careful attacker reads them). */
function cookieFrom(reply: Uint8Array, replyKey: Uint8Array, sent: Set<string>): Uint8Array | null {
  const d = decodeCookieReply(reply);
  if (!d.ok || !sent.has(Buffer.from(d.value.mac1).toString("hex"))) return null;
  try {
    return xchacha20poly1305(replyKey, d.value.nonce, d.value.mac1).decrypt(d.value.sealedCookie);
  } catch {
    return null;
  }
}

function victimAddressOf(spec: FloodSpec): Address {
  const parsed = parseAddress(spec.victimAddress ?? "");
  if (!parsed.ok) throw new Error(`claims need the victim's address: ${parsed.error.message}`);
  return parsed.value;
}

export async function flood(spec: FloodSpec): Promise<FloodResult> {
  const victimKey = new Uint8Array(Buffer.from(spec.victimKey, "base64"));
  const pool = spec.mode === "junk" ? junkFrames(victimKey, 1024) : claimFrames(victimKey, victimAddressOf(spec), spec.count ?? 12_000);
  const colon = spec.target.lastIndexOf(":");
  const host = spec.target.slice(0, colon);
  const port = Number(spec.target.slice(colon + 1));
  if (!/^127\.\d+\.\d+\.\d+$/.test(host)) throw new Error(`floods go to 127.0.0.0/8 only, not ${host}`);
  if (!(spec.seconds > 0 && spec.seconds <= 10)) throw new Error("a flood lasts at most 10 s");
  let cookieReplies = 0;
  let otherReplies = 0;
  let cookie: Uint8Array | null = null;
  const poolMac1 = new Set(pool.map((f) => Buffer.from(f.subarray(INITIATION_MAC_OFFSET, INITIATION_MAC2_OFFSET)).toString("hex")));
  const replyKey = cookieReplyKey(remoteHandshakeKeys(victimKey).staticPublic);
  const socket = await Bun.udpSocket({
    hostname: "127.0.0.1",
    socket: {
      data(_s, data) {
        const bytes = new Uint8Array(data);
        if (bytes[0] === 0x03) {
          cookieReplies++;
          if (spec.cookies) cookie = cookieFrom(bytes, replyKey, poolMac1) ?? cookie;
        } else otherReplies++;
      },
    },
  });
  const started = performance.now();
  const end = started + spec.seconds * 1000;
  let sent = 0;
  let next = 0;
  while (performance.now() < end) {
    const due = Math.min(Math.floor(((performance.now() - started) / 1000) * spec.rate) - sent, 2000);
    if (due > 0) {
      const batch: (Uint8Array | string | number)[] = [];
      for (let i = 0; i < due; i++) {
        let frame = pool[next++ % pool.length]!;
        if (spec.cookies && cookie) {
          frame = frame.slice();
          frame.set(computeMac2(cookie, frame), INITIATION_MAC2_OFFSET);
        }
        batch.push(frame, port, host);
      }
      socket.sendMany(batch);
      sent += due;
    }
    await Bun.sleep(1);
  }
  const seconds = (performance.now() - started) / 1000;
  await Bun.sleep(100);
  socket.close();
  return { sent, seconds, cookieReplies, otherReplies };
}

/** Runs a flood in a child process; resolves with its result. */
export async function floodInChild(spec: FloodSpec): Promise<FloodResult> {
  const proc = Bun.spawn([process.execPath, import.meta.path, JSON.stringify(spec)], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), spec.seconds * 1000 + 30_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`flood sender exited with ${code}: ${err}`);
  return JSON.parse(out.trim().split("\n").pop()!) as FloodResult;
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2]!) as FloodSpec;
  const result = await flood(spec);
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}
