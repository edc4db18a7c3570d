/**
 * A complete handshake between two local identities, in memory: what tests
 * and the benchmark use to get a pair of connected DataSessions.
 *
 *   const a = nodeKeys(identityA, addressA), b = nodeKeys(identityB, addressB)   once
 *   const { initiator, responder } = connectInMemory(a, b)                       per handshake
 */
import type { Address } from "../protocol/address.ts";
import { DataSession } from "./data-session.ts";
import {
  acceptInitiation,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  localHandshakeKeys,
  remoteHandshakeKeys,
  type LocalHandshakeKeys,
  type RemoteHandshakeKeys,
  type SessionKeys,
} from "./handshake.ts";
import type { Identity } from "./identity.ts";
import { secureRandom, type RandomSource } from "./noise.ts";
import { TimestampClock } from "./timestamp.ts";

export interface NodeKeys {
  readonly identity: Identity;
  readonly address: Address;
  readonly local: LocalHandshakeKeys;
  /** How other nodes see this one (its pinned key). */
  readonly asRemote: RemoteHandshakeKeys;
}

export function nodeKeys(identity: Identity, address: Address): NodeKeys {
  return { identity, address, local: localHandshakeKeys(identity), asRemote: remoteHandshakeKeys(identity.publicKey) };
}

const sharedClock = new TimestampClock();

function randomIndex(random: RandomSource): number {
  const b = random(4);
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

export interface ConnectedPair {
  readonly initiator: DataSession;
  readonly responder: DataSession;
  readonly initiatorKeys: SessionKeys;
  readonly responderKeys: SessionKeys;
}

/** Runs initiation -> response between `a` (initiator) and `b`; throws if any step fails. */
export function connectInMemory(a: NodeKeys, b: NodeKeys, random: RandomSource = secureRandom): ConnectedPair {
  const { frame, state } = createInitiation({
    local: a.local,
    remote: b.asRemote,
    localAddress: a.address,
    remoteAddress: b.address,
    localIndex: randomIndex(random),
    timestamp: sharedClock.next(),
    random,
  });
  const pending = consumeInitiation(b.local, b.address, frame);
  if (!pending.ok) throw new Error(`initiation rejected: ${pending.error.message}`);
  const accepted = acceptInitiation(pending.value, a.asRemote, { localIndex: randomIndex(random), random });
  if (!accepted.ok) throw new Error(`initiation not accepted: ${accepted.error.message}`);
  const keys = consumeResponse(state, accepted.value.frame);
  if (!keys.ok) throw new Error(`response rejected: ${keys.error.message}`);
  return {
    initiator: new DataSession({ ...keys.value, localAddress: a.address, remoteAddress: b.address }),
    responder: new DataSession({ ...accepted.value.keys, localAddress: b.address, remoteAddress: a.address }),
    initiatorKeys: keys.value,
    responderKeys: accepted.value.keys,
  };
}
