/**
 * The tunnel's clocks and limits (milliseconds), modelled on WireGuard's.
 * Every Peer takes these as defaults; tests shrink them.
 *
 *   rekeyAfterTime 120 s     the initiator of a session starts a new handshake when it sends on a
 *                            session this old (only initiators, so both sides do not race)
 *   rejectAfterTime 180 s    a session this old is never used again, in either direction
 *   receiveRekeyTime 165 s   an initiator that only receives rekeys here (reject - keepalive - rekeyTimeout)
 *   rekeyAttemptTime 90 s    a handshake not done by then is given up (event + queued packets dropped)
 *   firstRetry 1 s, doubling to rekeyTimeout 5 s, plus up to 333 ms of jitter: handshake retries
 *   keepaliveTimeout 10 s    received data but sent nothing for this long: send an empty data frame
 *   deadPeerTimeout 15 s     sent data but received nothing for this long: start a new handshake
 *   zeroKeysAfter 540 s      no new session for 3 x rejectAfterTime: forget all session keys
 *   minInitiationInterval 20 ms   initiations from one peer closer than this are dropped (flood)
 *   rekeyAfterMessages / rejectAfterMessages   per-key frame limits, see data-session.ts
 */
import { REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES } from "../crypto/data-session.ts";

export interface TunnelTimers {
  readonly rekeyAfterTime: number;
  readonly rejectAfterTime: number;
  readonly rekeyAttemptTime: number;
  readonly rekeyTimeout: number;
  readonly firstRetry: number;
  readonly retryJitter: number;
  readonly keepaliveTimeout: number;
  readonly zeroKeysAfter: number;
  readonly minInitiationInterval: number;
  readonly rekeyAfterMessages: number;
  readonly rejectAfterMessages: number;
}

export const DEFAULT_TIMERS: TunnelTimers = {
  rekeyAfterTime: 120_000,
  rejectAfterTime: 180_000,
  rekeyAttemptTime: 90_000,
  rekeyTimeout: 5_000,
  firstRetry: 1_000,
  retryJitter: 333,
  keepaliveTimeout: 10_000,
  zeroKeysAfter: 3 * 180_000,
  minInitiationInterval: 20,
  rekeyAfterMessages: REKEY_AFTER_MESSAGES,
  rejectAfterMessages: REJECT_AFTER_MESSAGES,
};

/** When an initiator that only receives on a session asks for a new one. */
export function receiveRekeyTime(t: TunnelTimers): number {
  return t.rejectAfterTime - t.keepaliveTimeout - t.rekeyTimeout;
}

/** Sent data and heard nothing back for this long: the path or the session is presumed dead. */
export function deadPeerTimeout(t: TunnelTimers): number {
  return t.keepaliveTimeout + t.rekeyTimeout;
}
