/**
 * Pilot's tunnel handshake: Noise_IK_25519_AESGCM_SHA256 between two node
 * identities, one round trip, sans I/O.
 *
 *   localHandshakeKeys(identity): LocalHandshakeKeys                 once per process
 *   remoteHandshakeKeys(edPublic): RemoteHandshakeKeys               once per pinned peer key; throws on a bad key
 *
 *   Initiator                                                      Responder
 *   createInitiation({ local, remote, localAddress,
 *     remoteAddress, localIndex, timestamp })
 *     -> { frame, state }                     ---- 0x01 ---->      consumeInitiation(local, localAddress, frame)
 *                                                                    -> Result<PendingInitiation>  (claimed address,
 *                                                                       initiator static, timestamp; no key checked yet)
 *                                                                  ... the shell finds the pinned Ed25519 key for
 *                                                                      pending.initiatorAddress (registry, async) ...
 *                                                                  acceptInitiation(pending, pinnedEdPublic, { localIndex })
 *   consumeResponse(state, frame)             <---- 0x02 ----       -> Result<{ frame, keys }>
 *     -> Result<SessionKeys>
 *
 * Binding: the prologue is "pilot/tunnel/1" ‖ the responder's 6-byte Pilot
 * address; the initiation payload (encrypted, authenticated) carries the
 * initiator's session index, its Pilot address and a timestamp; the response
 * payload carries the responder's session index. Static keys are the X25519
 * images of the Ed25519 identities; the responder accepts only if the
 * decrypted initiator static equals the image of the key pinned for the
 * claimed address, and the initiator encrypts to the image of the key pinned
 * for the responder, so both identities are authenticated. Fresh ephemerals
 * on both sides give forward secrecy; Split() gives one key per direction.
 *
 * mac1 = first 16 bytes of HMAC-SHA-256(SHA-256("pilot/mac1/1" ‖ receiver's
 * static public key), frame up to mac1). Anyone who knows the receiver's
 * public key can compute it; its job is to drop random junk and frames meant
 * for another key before any Diffie-Hellman work (`verifyMac1`). An
 * initiation's mac2 (zero here) is the cookie's business: `cookie.ts`.
 *
 * Replay: timestamps are checked by the caller (the per-peer state machine)
 * against the greatest one accepted from that peer.
 */
import { writeAddress, readAddress, type Address } from "../protocol/address.ts";
import { fail, ok, type Result } from "../protocol/result.ts";
import {
  decodeInitiation,
  decodeResponse,
  encodeInitiation,
  encodeResponse,
  INITIATION_MAC_OFFSET,
  MAC_SIZE,
  RESPONSE_MAC_OFFSET,
  type InitiationFrame,
  type ResponseFrame,
} from "../protocol/tunnel-frame.ts";
import { equalBytes } from "./bytes.ts";
import { hmacSha256, sha256 } from "./hkdf.ts";
import { edPublicToX25519 } from "./keys.ts";
import { HandshakeState, PATTERN_IK, staticKeyPair, type RandomSource, type StaticKeyPair } from "./noise.ts";
import { TIMESTAMP_SIZE } from "./timestamp.ts";

export const PROTOCOL_LABEL = "pilot/tunnel/1";
const LABEL_BYTES = new TextEncoder().encode(PROTOCOL_LABEL);
const MAC1_LABEL = new TextEncoder().encode("pilot/mac1/1");
const INITIATION_PAYLOAD_SIZE = 4 + 6 + TIMESTAMP_SIZE;
const RESPONSE_PAYLOAD_SIZE = 4;

export interface LocalHandshakeKeys {
  readonly staticPair: StaticKeyPair;
  /** Key under which frames sent to us carry mac1. */
  readonly mac1Key: Uint8Array;
}

export interface RemoteHandshakeKeys {
  /** The pinned Ed25519 identity key. */
  readonly identityKey: Uint8Array;
  /** Its X25519 image: the peer's Noise static key. */
  readonly staticPublic: Uint8Array;
  /** Key for the mac1 of frames we send to the peer. */
  readonly mac1Key: Uint8Array;
}

export interface SessionKeys {
  readonly sendKey: Uint8Array;
  readonly receiveKey: Uint8Array;
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly isInitiator: boolean;
  /** The Noise handshake hash: a transcript digest both sides share (channel binding). */
  readonly handshakeHash: Uint8Array;
}

function mac1KeyFor(staticPublic: Uint8Array): Uint8Array {
  return sha256(MAC1_LABEL, staticPublic);
}

function mac1(key: Uint8Array, covered: Uint8Array): Uint8Array {
  return hmacSha256(key, covered).subarray(0, MAC_SIZE);
}

/** Checks an initiation's mac1 under our key: one HMAC, no Diffie-Hellman. */
export function verifyMac1(local: LocalHandshakeKeys, frame: InitiationFrame): boolean {
  return equalBytes(mac1(local.mac1Key, frame.macInput), frame.mac1);
}

export function localHandshakeKeys(identity: { readonly staticPrivate: Uint8Array }): LocalHandshakeKeys {
  const staticPair = staticKeyPair(identity.staticPrivate);
  return { staticPair, mac1Key: mac1KeyFor(staticPair.publicKey) };
}

export function remoteHandshakeKeys(identityKey: Uint8Array): RemoteHandshakeKeys {
  const staticPublic = edPublicToX25519(identityKey);
  return { identityKey: identityKey.slice(), staticPublic, mac1Key: mac1KeyFor(staticPublic) };
}

function prologue(responderAddress: Address): Uint8Array {
  const out = new Uint8Array(LABEL_BYTES.length + 6);
  out.set(LABEL_BYTES);
  writeAddress(new DataView(out.buffer), LABEL_BYTES.length, responderAddress);
  return out;
}

export interface InitiatorHandshake {
  readonly localIndex: number;
  readonly remoteAddress: Address;
  readonly timestamp: Uint8Array;
  /** @internal */
  readonly noise: HandshakeState;
  /** @internal */
  readonly localMac1Key: Uint8Array;
}

export interface InitiationParams {
  readonly local: LocalHandshakeKeys;
  readonly remote: RemoteHandshakeKeys;
  readonly localAddress: Address;
  readonly remoteAddress: Address;
  readonly localIndex: number;
  readonly timestamp: Uint8Array;
  readonly random?: RandomSource;
  /** Fixed ephemeral private key, for tests only. */
  readonly ephemeralKey?: Uint8Array;
}

export function createInitiation(p: InitiationParams): { frame: Uint8Array; state: InitiatorHandshake } {
  if (p.timestamp.length !== TIMESTAMP_SIZE) throw new RangeError(`timestamp must be ${TIMESTAMP_SIZE} bytes`);
  const noise = new HandshakeState({
    pattern: PATTERN_IK,
    initiator: true,
    prologue: prologue(p.remoteAddress),
    staticKey: p.local.staticPair,
    remoteStatic: p.remote.staticPublic,
    ephemeralKey: p.ephemeralKey,
    random: p.random,
  });
  const payload = new Uint8Array(INITIATION_PAYLOAD_SIZE);
  const view = new DataView(payload.buffer);
  view.setUint32(0, p.localIndex >>> 0);
  writeAddress(view, 4, p.localAddress);
  payload.set(p.timestamp, 10);
  const frame = encodeInitiation(noise.writeMessage(payload));
  frame.set(mac1(p.remote.mac1Key, frame.subarray(0, INITIATION_MAC_OFFSET)), INITIATION_MAC_OFFSET);
  return {
    frame,
    state: {
      localIndex: p.localIndex >>> 0,
      remoteAddress: p.remoteAddress,
      timestamp: p.timestamp.slice(),
      noise,
      localMac1Key: p.local.mac1Key,
    },
  };
}

/** An initiation that decrypted under our static key but whose sender is not yet checked. */
export interface PendingInitiation {
  /** The Pilot address the initiator claims; the caller looks up its pinned key. */
  readonly initiatorAddress: Address;
  /** The initiator's X25519 static key as it sent it. */
  readonly initiatorStatic: Uint8Array;
  readonly initiatorIndex: number;
  readonly timestamp: Uint8Array;
  /** @internal */
  readonly noise: HandshakeState;
  /** @internal */
  accepted: boolean;
}

/**
 * Checks mac1 and decrypts an initiation addressed to us. Costs two X25519
 * operations once mac1 passes; never throws.
 */
export function consumeInitiation(
  local: LocalHandshakeKeys,
  localAddress: Address,
  input: Uint8Array | InitiationFrame,
): Result<PendingInitiation> {
  let frame: InitiationFrame;
  if (input instanceof Uint8Array) {
    const decoded = decodeInitiation(input);
    if (!decoded.ok) return decoded;
    frame = decoded.value;
  } else {
    frame = input;
  }
  if (!verifyMac1(local, frame)) {
    return fail("bad_mac", "initiation mac1 does not match our static key");
  }
  const noise = new HandshakeState({
    pattern: PATTERN_IK,
    initiator: false,
    prologue: prologue(localAddress),
    staticKey: local.staticPair,
  });
  const read = noise.readMessage(frame.noise);
  if (!read.ok) return read;
  const payload = read.value;
  const initiatorStatic = noise.remoteStaticKey();
  if (payload.length !== INITIATION_PAYLOAD_SIZE || initiatorStatic === null) {
    return fail("bad_payload", `initiation payload is ${payload.length} bytes, expected ${INITIATION_PAYLOAD_SIZE}`);
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return ok({
    initiatorAddress: readAddress(view, 4),
    initiatorStatic,
    initiatorIndex: view.getUint32(0),
    timestamp: payload.slice(10, 10 + TIMESTAMP_SIZE),
    noise,
    accepted: false,
  });
}

export interface AcceptParams {
  readonly localIndex: number;
  readonly random?: RandomSource;
  /** Fixed ephemeral private key, for tests only. */
  readonly ephemeralKey?: Uint8Array;
}

/**
 * Completes the responder's side once the caller has the pinned Ed25519 key
 * for `pending.initiatorAddress`: fails unless the initiator's static key is
 * that key's X25519 image. Returns the response frame and the session keys.
 */
export function acceptInitiation(
  pending: PendingInitiation,
  expectedIdentityKey: Uint8Array | RemoteHandshakeKeys,
  p: AcceptParams,
): Result<{ frame: Uint8Array; keys: SessionKeys }> {
  if (pending.accepted) return fail("already_accepted", "this initiation was already answered");
  let remote: RemoteHandshakeKeys;
  try {
    remote = expectedIdentityKey instanceof Uint8Array ? remoteHandshakeKeys(expectedIdentityKey) : expectedIdentityKey;
  } catch (error) {
    return fail("bad_identity_key", `the pinned identity key is not a valid Ed25519 key: ${(error as Error).message}`);
  }
  if (!equalBytes(remote.staticPublic, pending.initiatorStatic)) {
    return fail("wrong_identity", "the initiator's static key does not belong to the identity pinned for its address");
  }
  pending.accepted = true;
  const payload = new Uint8Array(RESPONSE_PAYLOAD_SIZE);
  new DataView(payload.buffer).setUint32(0, p.localIndex >>> 0);
  let noiseMessage: Uint8Array;
  try {
    const fixed = p.ephemeralKey;
    noiseMessage = pending.noise.writeMessage(payload, fixed ? () => fixed.slice() : p.random);
  } catch (error) {
    return fail("bad_key", `could not complete the handshake: ${(error as Error).message}`);
  }
  const frame = encodeResponse(pending.initiatorIndex, noiseMessage);
  frame.set(mac1(remote.mac1Key, frame.subarray(0, RESPONSE_MAC_OFFSET)), RESPONSE_MAC_OFFSET);
  const [initiatorToResponder, responderToInitiator] = pending.noise.split();
  return ok({
    frame,
    keys: {
      sendKey: responderToInitiator,
      receiveKey: initiatorToResponder,
      localIndex: p.localIndex >>> 0,
      remoteIndex: pending.initiatorIndex,
      isInitiator: false,
      handshakeHash: pending.noise.handshakeHash(),
    },
  });
}

/**
 * Completes the initiator's side. A response that fails any check leaves
 * `state` usable, so a forged response cannot spoil the real one.
 */
export function consumeResponse(state: InitiatorHandshake, input: Uint8Array | ResponseFrame): Result<SessionKeys> {
  let frame: ResponseFrame;
  if (input instanceof Uint8Array) {
    const decoded = decodeResponse(input);
    if (!decoded.ok) return decoded;
    frame = decoded.value;
  } else {
    frame = input;
  }
  if (frame.receiverIndex !== state.localIndex) return fail("wrong_index", "response is for another handshake");
  if (state.noise.isComplete()) return fail("already_complete", "this handshake already has its response");
  if (!equalBytes(mac1(state.localMac1Key, frame.macInput), frame.mac1)) {
    return fail("bad_mac", "response mac1 does not match our static key");
  }
  const read = state.noise.readMessage(frame.noise);
  if (!read.ok) return read;
  if (read.value.length !== RESPONSE_PAYLOAD_SIZE) return fail("bad_payload", "response payload has the wrong size");
  const [initiatorToResponder, responderToInitiator] = state.noise.split();
  return ok({
    sendKey: initiatorToResponder,
    receiveKey: responderToInitiator,
    localIndex: state.localIndex,
    remoteIndex: new DataView(read.value.buffer, read.value.byteOffset, 4).getUint32(0),
    isInitiator: true,
    handshakeHash: state.noise.handshakeHash(),
  });
}
