/**
 * The daemon's side of endpoint discovery. The daemon owns its UDP socket, so
 * these helpers never touch one: they build the discover datagram, check a
 * reply, and (in `discoverEndpoint`) drive a few attempts through callbacks.
 *
 *   const result = await discoverEndpoint({
 *     send: (bytes) => socket.send(bytes, beaconPort, beaconIp),
 *     listen: (handler) => { beaconHandler = handler; return () => (beaconHandler = undefined); },
 *     beaconKey,                       // the rendezvous key, pinned from the registry's hello
 *   });
 *   // result: { ip: "203.0.113.7", port: 40123 }
 *
 * A reply is accepted only if its nonce is the one just sent and the
 * rendezvous key signed it, so neither an off-path forger nor a replayed old
 * reply can plant a false public address.
 */
import { randomBytes } from "node:crypto";
import {
  BEACON_NONCE_SIZE,
  decodeBeaconMessage,
  discoverReplyBodyOf,
  discoverReplySignedBytes,
  encodeDiscover,
} from "../protocol/beacon-message.ts";
import { fail, ok, type Result } from "../protocol/result.ts";
import { verifyEd25519 } from "../registry/signer.ts";

export interface ObservedEndpoint {
  readonly ip: string;
  readonly port: number;
}

export function createDiscover(): { nonce: Uint8Array; datagram: Uint8Array } {
  const nonce = new Uint8Array(randomBytes(BEACON_NONCE_SIZE));
  return { nonce, datagram: encodeDiscover(nonce) };
}

/** Checks a datagram as the reply to the discover with `nonce`, signed by `beaconKey`. */
export function verifyDiscoverReply(datagram: Uint8Array, nonce: Uint8Array, beaconKey: Uint8Array): Result<ObservedEndpoint> {
  const decoded = decodeBeaconMessage(datagram);
  if (!decoded.ok) return decoded;
  const m = decoded.value;
  if (m.type !== "discover_reply") return fail("unexpected_type", `expected discover_reply, got ${m.type}`);
  if (Buffer.compare(m.nonce, nonce) !== 0) return fail("wrong_nonce", "the reply answers another discover");
  if (!verifyEd25519(beaconKey, discoverReplySignedBytes(discoverReplyBodyOf(datagram)), m.signature)) {
    return fail("bad_signature", "the reply is not signed by the rendezvous key");
  }
  return ok({ ip: m.ip, port: m.port });
}

export interface DiscoverOptions {
  /** Sends one datagram to the beacon. */
  readonly send: (datagram: Uint8Array) => void;
  /** Routes beacon datagrams (first byte 0x20-0x2F) to `handler`; returns a function that stops it. */
  readonly listen: (handler: (datagram: Uint8Array) => void) => () => void;
  readonly beaconKey: Uint8Array;
  /** Default 3 attempts, 1000 ms apart. */
  readonly attempts?: number;
  readonly intervalMs?: number;
}

/** Sends discovers until a valid reply arrives; rejects after the last attempt times out. */
export function discoverEndpoint(options: DiscoverOptions): Promise<ObservedEndpoint> {
  const attempts = options.attempts ?? 3;
  const intervalMs = options.intervalMs ?? 1000;
  return new Promise((resolve, reject) => {
    const sent: Uint8Array[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = options.listen((datagram) => {
      for (const nonce of sent) {
        const r = verifyDiscoverReply(datagram, nonce, options.beaconKey);
        if (r.ok) {
          finish();
          resolve(r.value);
          return;
        }
      }
    });
    const finish = () => {
      if (timer) clearTimeout(timer);
      stop();
    };
    const attempt = (n: number) => {
      if (n >= attempts) {
        finish();
        reject(new Error(`no valid beacon reply after ${attempts} attempts`));
        return;
      }
      const { nonce, datagram } = createDiscover();
      sent.push(nonce);
      try {
        options.send(datagram);
      } catch (e) {
        finish();
        reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      timer = setTimeout(() => attempt(n + 1), intervalMs);
    };
    attempt(0);
  });
}
