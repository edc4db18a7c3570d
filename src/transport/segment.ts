/**
 * A stream segment: the part of a Pilot packet the stream engine reads and writes.
 * The daemon adds protocol, addresses and ports (a `Packet` is structurally a
 * `Segment`, so a decoded packet can be passed straight to the engine).
 *
 *   Segment                               flags, seq, ack, window (WINDOW_UNIT units), sack, payload
 *   segmentLength(seg)                    sequence space used: payload + SYN + FIN
 *   toPacket(seg, route)                  add protocol, addresses and ports
 *   resetFor(seg, reason?)                the RST that answers a segment no connection claims
 *   resetReasonOf(seg)                    why a peer refused our SYN or ended the connection (the RST's one-byte payload)
 *   describeSegment(seg)                  "SYN|ACK seq=.. ack=.. win=.. len=.." for logs and tests
 */
import type { Address } from "../protocol/address.ts";
import { Flag, Protocol, type Packet, type SackBlock } from "../protocol/packet.ts";

export interface Segment {
  readonly flags: number;
  readonly seq: number;
  readonly ack: number;
  /** Receive window in units of WINDOW_UNIT bytes. */
  readonly window: number;
  readonly sack: readonly SackBlock[];
  readonly payload: Uint8Array;
}

export const NO_SACK: readonly SackBlock[] = Object.freeze([]);
export const EMPTY_PAYLOAD = new Uint8Array(0);

export function segmentLength(seg: Segment): number {
  return seg.payload.length + (seg.flags & Flag.SYN ? 1 : 0) + (seg.flags & Flag.FIN ? 1 : 0);
}

/** Where a segment goes: the 4-tuple the daemon knows the connection by. */
export interface StreamRoute {
  readonly src: Address;
  readonly dst: Address;
  readonly srcPort: number;
  readonly dstPort: number;
}

export function toPacket(seg: Segment, route: StreamRoute): Packet {
  return {
    protocol: Protocol.Stream,
    flags: seg.flags,
    src: route.src,
    dst: route.dst,
    srcPort: route.srcPort,
    dstPort: route.dstPort,
    seq: seg.seq,
    ack: seg.ack,
    window: seg.window,
    sack: seg.sack,
    payload: seg.payload,
  };
}

/**
 * Why a SYN was refused, or an open connection ended, carried as the one-byte
 * payload of the RST (no payload: nothing listens on that port, or no reason
 * given). Receivers that do not know a code treat it as a plain reset.
 */
export const ResetReason = {
  /** The listener's or the peer's connection limit is reached. */
  Limit: 1,
  /** Too many connection attempts from this peer just now. */
  Rate: 2,
  /** The receiver of this RST kept its window closed past the sender's zero-window timeout (it was not reading). */
  WindowClosed: 3,
} as const;
export type ResetReason = (typeof ResetReason)[keyof typeof ResetReason];

const REASON_PAYLOADS: Record<number, Uint8Array> = {
  [ResetReason.Limit]: Uint8Array.of(ResetReason.Limit),
  [ResetReason.Rate]: Uint8Array.of(ResetReason.Rate),
  [ResetReason.WindowClosed]: Uint8Array.of(ResetReason.WindowClosed),
};

/** The payload of a RST that says `reason`. */
export function resetPayload(reason: ResetReason): Uint8Array {
  return REASON_PAYLOADS[reason]!;
}

/**
 * RFC 9293 §3.10.7.1: the reply to a segment for which no connection exists
 * (port closed, connection forgotten), or to a SYN refused for `reason`. Never answers a RST.
 */
export function resetFor(seg: Segment, reason?: ResetReason): Segment | undefined {
  if (seg.flags & Flag.RST) return undefined;
  const payload = reason === undefined ? EMPTY_PAYLOAD : REASON_PAYLOADS[reason]!;
  if (seg.flags & Flag.ACK) {
    return { flags: Flag.RST, seq: seg.ack, ack: 0, window: 0, sack: NO_SACK, payload };
  }
  return {
    flags: Flag.RST | Flag.ACK,
    seq: 0,
    ack: (seg.seq + segmentLength(seg)) >>> 0,
    window: 0,
    sack: NO_SACK,
    payload,
  };
}

/** The refusal reason a RST carries, if it carries a known one. */
export function resetReasonOf(seg: Segment): ResetReason | undefined {
  if (!(seg.flags & Flag.RST) || seg.payload.length !== 1) return undefined;
  const r = seg.payload[0];
  return r !== undefined && REASON_PAYLOADS[r] ? (r as ResetReason) : undefined;
}

export function describeSegment(seg: Segment): string {
  const names: string[] = [];
  if (seg.flags & Flag.SYN) names.push("SYN");
  if (seg.flags & Flag.FIN) names.push("FIN");
  if (seg.flags & Flag.RST) names.push("RST");
  if (seg.flags & Flag.ACK) names.push("ACK");
  let text = `${names.join("|") || "-"} seq=${seg.seq} ack=${seg.ack} win=${seg.window} len=${seg.payload.length}`;
  if (seg.sack.length > 0) text += ` sack=${seg.sack.map((b) => `${b.start}-${b.end}`).join(",")}`;
  return text;
}
