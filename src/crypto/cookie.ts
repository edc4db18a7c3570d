/**
 * Cookies under load (WireGuard's mac2), sans I/O: a responder that is busy
 * answers an initiation with a cookie instead of Diffie-Hellman work, and
 * then spends DH only on initiations that carry a mac2 made with that cookie,
 * which proves the sender receives datagrams at the source address it uses.
 *
 * Responder:
 *   const checker = new CookieChecker(localStaticPublic, random?)
 *   checker.checkMac2(frame, source, now): boolean      is mac2 made with the cookie for `source`?
 *   checker.createReply(frame, source, now): Uint8Array the 0x03 cookie reply for that initiation
 * Initiator (one per peer it initiates to):
 *   const jar = new CookieJar(responderStaticPublic)
 *   jar.stamp(initiationFrame, now)   after mac1 is set: adds mac2 if it holds a fresh cookie,
 *                                     and remembers mac1 (a reply must echo it)
 *   jar.consumeReply(reply, now): Result<null>          takes the cookie from a reply to the
 *                                                       latest stamped initiation, once
 *
 *   secret  32 random bytes, replaced when 120 s old (checked at use: time is an argument)
 *   cookie  = first 16 bytes of HMAC-SHA-256(secret, source)   source: "ip:port" as the responder saw it
 *   mac2    = first 16 bytes of HMAC-SHA-256(cookie, initiation bytes 0-137)
 *   reply   = mac1 of the initiation ‖ 24-byte random nonce ‖
 *             XChaCha20-Poly1305(key = SHA-256("pilot/cookie/1" ‖ responder's X25519 static key),
 *                                nonce, cookie, associated data = that mac1)
 *
 * The encryption key is public (anyone who knows the responder's key can
 * derive it), as in WireGuard: the cookie proves the source address, not an
 * identity. Binding the reply to the initiation's mac1 means a reply is only
 * accepted by the initiator that sent that initiation, once; a forged or
 * replayed reply at worst makes one retry carry a useless mac2.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { fail, ok, type Result } from "../protocol/result.ts";
import {
  COOKIE_NONCE_SIZE,
  COOKIE_SIZE,
  encodeCookieReply,
  INITIATION_MAC_OFFSET,
  INITIATION_MAC2_OFFSET,
  MAC_SIZE,
  type CookieReplyFrame,
  type InitiationFrame,
} from "../protocol/tunnel-frame.ts";
import { equalBytes } from "./bytes.ts";
import { hmacSha256, sha256 } from "./hkdf.ts";
import { secureRandom, type RandomSource } from "./noise.ts";

/** How long a responder's cookie secret lives, and how long an initiator uses a cookie. */
export const COOKIE_SECRET_LIFETIME = 120_000;
const COOKIE_LABEL = new TextEncoder().encode("pilot/cookie/1");
const ZERO_MAC = new Uint8Array(MAC_SIZE);

/** The key that seals cookie replies from the node whose X25519 static key is `staticPublic`. */
export function cookieReplyKey(staticPublic: Uint8Array): Uint8Array {
  return sha256(COOKIE_LABEL, staticPublic);
}

/** mac2 of an initiation frame (its first 138 bytes) under `cookie`. */
export function computeMac2(cookie: Uint8Array, frame: Uint8Array): Uint8Array {
  return hmacSha256(cookie, frame.subarray(0, INITIATION_MAC2_OFFSET)).subarray(0, MAC_SIZE);
}

const encoder = new TextEncoder();

export class CookieChecker {
  private readonly replyKey: Uint8Array;
  private secret: Uint8Array | null = null;
  private secretSetAt = -Infinity;

  constructor(
    localStaticPublic: Uint8Array,
    private readonly random: RandomSource = secureRandom,
  ) {
    this.replyKey = cookieReplyKey(localStaticPublic);
  }

  private currentSecret(now: number): Uint8Array {
    if (this.secret === null || now - this.secretSetAt >= COOKIE_SECRET_LIFETIME) {
      this.secret = this.random(32);
      this.secretSetAt = now;
    }
    return this.secret;
  }

  /** The cookie a sender at `source` gets now. */
  cookieFor(source: string, now: number): Uint8Array {
    return hmacSha256(this.currentSecret(now), encoder.encode(source)).subarray(0, COOKIE_SIZE);
  }

  /** True when the initiation carries a mac2 made with the current cookie for `source`. */
  checkMac2(frame: InitiationFrame, source: string, now: number): boolean {
    if (equalBytes(frame.mac2, ZERO_MAC)) return false;
    return equalBytes(computeMac2(this.cookieFor(source, now), frame.mac2Input), frame.mac2);
  }

  /** The cookie reply for `frame`, which came from `source`. */
  createReply(frame: InitiationFrame, source: string, now: number): Uint8Array {
    const cookie = this.cookieFor(source, now);
    const nonce = this.random(COOKIE_NONCE_SIZE);
    const sealed = xchacha20poly1305(this.replyKey, nonce, frame.mac1).encrypt(cookie);
    return encodeCookieReply(frame.mac1, nonce, sealed);
  }
}

export class CookieJar {
  private readonly replyKey: Uint8Array;
  private cookie: Uint8Array | null = null;
  private cookieAt = -Infinity;
  private lastMac1: Uint8Array | null = null;

  constructor(responderStaticPublic: Uint8Array) {
    this.replyKey = cookieReplyKey(responderStaticPublic);
  }

  /** Holds a cookie young enough to use. */
  hasCookie(now: number): boolean {
    return this.cookie !== null && now - this.cookieAt < COOKIE_SECRET_LIFETIME;
  }

  /** Adds mac2 to a freshly built initiation (mac1 already set) when a cookie is at hand; remembers its mac1. */
  stamp(frame: Uint8Array, now: number): void {
    this.lastMac1 = frame.slice(INITIATION_MAC_OFFSET, INITIATION_MAC2_OFFSET);
    if (this.cookie !== null && this.hasCookie(now)) frame.set(computeMac2(this.cookie, frame), INITIATION_MAC2_OFFSET);
    else frame.fill(0, INITIATION_MAC2_OFFSET, INITIATION_MAC2_OFFSET + MAC_SIZE);
  }

  /** Is `mac1` the one of our latest initiation (a reply to it is still welcome)? */
  awaits(mac1: Uint8Array): boolean {
    return this.lastMac1 !== null && equalBytes(this.lastMac1, mac1);
  }

  /** Takes the cookie from a reply to our latest initiation; a reply is accepted once. */
  consumeReply(reply: CookieReplyFrame, now: number): Result<null> {
    if (this.lastMac1 === null || !equalBytes(this.lastMac1, reply.mac1)) {
      return fail("unexpected", "the cookie reply does not answer our latest initiation");
    }
    let cookie: Uint8Array;
    try {
      cookie = xchacha20poly1305(this.replyKey, reply.nonce, this.lastMac1).decrypt(reply.sealedCookie);
    } catch {
      return fail("auth_failed", "the cookie reply does not decrypt under the responder's cookie key");
    }
    if (cookie.length !== COOKIE_SIZE) return fail("bad_cookie", "the cookie has the wrong size");
    this.cookie = cookie;
    this.cookieAt = now;
    this.lastMac1 = null;
    return ok(null);
  }
}
