/**
 * The sender's loss-recovery state, in send positions (see seq.ts): RFC 6675
 * (SACK scoreboard, pipe, NextSeg) plus RACK-style time-based loss marking
 * (RFC 8985 in spirit).
 *
 *   sacked                          SACKed ranges above the cumulative ACK
 *   addSack(s, e) / onCumulativeAck(una)
 *   noteSent(pos, now)              an original (first) transmission starting at pos left now
 *   cleanSendTime(pos)              its send time if an ACK for it is a valid RTT sample (Karn), else NaN
 *   wait                            reordering allowance, ms (about 1.25 RTT; the connection keeps it current)
 *   isLost(x, nxt, now)             is the hole starting at x lost?
 *   pipe(una, nxt, now)             RFC 6675 SetPipe: bytes believed in the network
 *   pickLost / pickUnsacked / pickRescue   NextSeg rules (1), (3), (4); result in pickStart/pickEnd
 *   pickTail                        the highest unSACKed segment (tail-loss probe)
 *   recordRetransmission(s, e, nxt, now)  a retransmission left; it counts in pipe until acked
 *   detectLostRetransmissions(una, now)   see below; lost ones are first in line for pickLost
 *   recheckAt                       when time alone will make something lost (a timer for the caller)
 *   enterFast / enterTimeout / exitRecovery
 *
 * A hole (unSACKed bytes below SACKed ones) is lost when
 *   - more than (DupThresh - 1) x MSS bytes, or DupThresh separate ranges, are SACKed
 *     above it (RFC 6675 IsLost), or
 *   - anything above it is SACKed and it was first sent more than `wait` ago: data
 *     sent after it has arrived and it had a round trip plus a reordering allowance
 *     to do the same (RACK). Original transmissions go out in position order, so
 *     "sent after" is simply "above"; this is what finds losses in small windows
 *     where three duplicate ACKs never come, or
 *   - we are recovering from a timeout and it lies below the recovery point.
 * A retransmission is lost again when DupThresh segments sent after it (positions
 * at or above the send position it left at) are SACKed, or one is and `wait` has
 * passed. RFC 6675 alone leaves lost retransmissions to the retransmission timer;
 * that is how 20 % loss would degenerate into a string of timeouts.
 *
 * No per-segment records: a hole is a gap between SACKed ranges and segments are
 * re-cut from the send buffer when retransmitted. The only logs are send times
 * (one position/time pair per original segment, trimmed as ACKs arrive) and
 * retransmissions in flight.
 */
import { RangeSet } from "./range-set.ts";

export const Recovery = { None: 0, Fast: 1, Timeout: 2 } as const;
export type RecoveryMode = (typeof Recovery)[keyof typeof Recovery];

export class Scoreboard {
  readonly sacked = new RangeSet();
  mode: RecoveryMode = Recovery.None;
  /** HighData when recovery began; recovery ends when the cumulative ACK reaches it. */
  recoveryPoint = 0;
  /** Highest position retransmitted by rules (1) and (3) in this recovery. */
  highRxt = 0;
  /** Reordering allowance in ms (RACK: RTT + RTT/4). */
  wait = 1000;
  /** RFC 6675 RescueRxt; -1 when undefined. */
  private rescueRxt = -1;
  private rtxStart: number[] = [];
  private rtxEnd: number[] = [];
  private rtxMark: number[] = [];
  private rtxTime: number[] = [];
  /** Bytes of retransmissions believed in flight. */
  rtxBytes = 0;
  private relost = new RangeSet();
  /** Positions ever retransmitted (above the cumulative ACK): no RTT samples from them (Karn). */
  private retransmitted = new RangeSet();
  /** When the last retransmission left: an ACK after it may have been triggered by it. */
  private lastRetransmission = Number.NEGATIVE_INFINITY;
  private sentPos: number[] = [];
  private sentTime: number[] = [];
  private sentHead = 0;
  private holeRecheck = Number.POSITIVE_INFINITY;
  private rtxRecheck = Number.POSITIVE_INFINITY;
  pickStart = 0;
  pickEnd = 0;
  private lossBytes: number;

  constructor(
    private mss: number,
    private readonly dupThresh: number,
  ) {
    this.lossBytes = (dupThresh - 1) * mss;
  }

  /** The segment size changed (path MTU): retransmissions are cut at the new size. */
  setMss(mss: number): void {
    this.mss = mss;
    this.lossBytes = (this.dupThresh - 1) * mss;
  }

  get recheckAt(): number {
    return this.holeRecheck < this.rtxRecheck ? this.holeRecheck : this.rtxRecheck;
  }

  addSack(start: number, end: number): number {
    return this.sacked.add(start, end);
  }

  noteSent(pos: number, now: number): void {
    this.sentPos.push(pos);
    this.sentTime.push(now);
  }

  onCumulativeAck(una: number): void {
    this.sacked.removeBelow(una);
    this.relost.removeBelow(una);
    this.retransmitted.removeBelow(una);
    if (this.highRxt < una) this.highRxt = una;
    // Keep the send-log entry that covers una; drop the ones before it.
    const pos = this.sentPos;
    let h = this.sentHead;
    while (h + 1 < pos.length && pos[h + 1]! <= una) h++;
    if (h >= 4096 && 2 * h >= pos.length) {
      pos.splice(0, h);
      this.sentTime.splice(0, h);
      h = 0;
    }
    this.sentHead = h;
  }

  enterFast(una: number, nxt: number): void {
    this.mode = Recovery.Fast;
    this.recoveryPoint = nxt;
    this.highRxt = una;
    this.rescueRxt = -1;
  }

  /** After a timeout every unSACKed byte below HighData counts as lost. */
  enterTimeout(una: number, nxt: number, forgetSacks: boolean): void {
    this.mode = Recovery.Timeout;
    this.recoveryPoint = nxt;
    this.highRxt = una;
    this.rescueRxt = -1;
    this.rtxStart.length = this.rtxEnd.length = this.rtxMark.length = this.rtxTime.length = 0;
    this.rtxRecheck = this.holeRecheck = Number.POSITIVE_INFINITY;
    this.rtxBytes = 0;
    this.relost.clear();
    // RFC 2018 §8: a receiver may renege on SACKed data. Ours never does, but after
    // repeated timeouts stop trusting the scoreboard rather than wait forever.
    if (forgetSacks) this.sacked.clear();
  }

  exitRecovery(): void {
    this.mode = Recovery.None;
    this.rescueRxt = -1;
  }

  get hasRetransmissionsInFlight(): boolean {
    return this.rtxStart.length > 0;
  }

  /** Positions below the result were first sent at least `wait` ms before `now`. */
  private agedBelow(nxt: number, now: number): number {
    const wait = this.wait;
    const times = this.sentTime;
    let lo = this.sentHead;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      // Same expression as the recheck time below, so rounding cannot make them disagree.
      if (times[mid]! + wait > now) hi = mid;
      else lo = mid + 1;
    }
    return lo < times.length ? this.sentPos[lo]! : nxt;
  }

  /**
   * When `pos` was sent, if an ACK for it is an unambiguous RTT sample (else NaN):
   * it was sent only once (Karn), and after the latest retransmission, because an
   * ACK triggered by a retransmission also covers older data whose own ACK was lost
   * and would make the round trip look as long as the wait for the retransmission.
   */
  cleanSendTime(pos: number): number {
    if (this.retransmitted.indexContaining(pos) >= 0) return Number.NaN;
    const t = this.sentAt(pos);
    return t === Number.NEGATIVE_INFINITY || t < this.lastRetransmission ? Number.NaN : t;
  }

  /** When position `pos` was first sent. */
  private sentAt(pos: number): number {
    const p = this.sentPos;
    let lo = this.sentHead;
    let hi = p.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (p[mid]! <= pos) lo = mid + 1;
      else hi = mid;
    }
    return lo > this.sentHead ? this.sentTime[lo - 1]! : Number.NEGATIVE_INFINITY;
  }

  /**
   * For the hole part [lo, hi) with `above` SACKed bytes in `rangesAbove` ranges
   * above it: the position c such that [lo, c) is lost and [c, hi) is not (yet).
   */
  private lostUpTo(lo: number, hi: number, above: number, rangesAbove: number, aged: number): number {
    if (above > this.lossBytes || rangesAbove >= this.dupThresh) return hi;
    let c = lo;
    if (this.mode === Recovery.Timeout && this.recoveryPoint > c) c = this.recoveryPoint;
    if (above > 0 && aged > c) c = aged;
    return c < hi ? c : hi;
  }

  isLost(x: number, nxt: number, now: number): boolean {
    if (this.mode === Recovery.Timeout && x < this.recoveryPoint) return true;
    const s = this.sacked;
    if (s.isEmpty) return false;
    const i = s.firstIndexEndingAfter(x);
    let below = 0;
    for (let k = 0; k < i; k++) below += s.end(k) - s.start(k);
    return this.lostUpTo(x, x + 1, s.total - below, s.count - i, this.agedBelow(nxt, now)) > x;
  }

  pipe(una: number, nxt: number, now: number): number {
    const s = this.sacked;
    this.holeRecheck = Number.POSITIVE_INFINITY;
    if (s.isEmpty) {
      const timeout = this.mode === Recovery.Timeout;
      return (timeout ? Math.max(0, nxt - Math.max(una, this.recoveryPoint)) : nxt - una) + this.rtxBytes;
    }
    const aged = this.agedBelow(nxt, now);
    const n = s.count;
    let above = 0;
    let hi = nxt;
    let original = 0;
    let pending = Number.POSITIVE_INFINITY;
    for (let i = n - 1; i >= -1; i--) {
      const lo = i >= 0 ? s.end(i) : una;
      if (hi > lo) {
        const c = this.lostUpTo(lo, hi, above, n - 1 - i, aged);
        original += hi - c;
        if (above > 0 && c < hi) pending = c; // will turn lost by time alone
      }
      if (i >= 0) {
        above += s.end(i) - s.start(i);
        hi = s.start(i);
      }
    }
    if (pending !== Number.POSITIVE_INFINITY) this.holeRecheck = this.sentAt(pending) + this.wait;
    return original + this.rtxBytes;
  }

  /** NextSeg rule (1), preceded by retransmissions already judged lost again. */
  pickLost(una: number, nxt: number, now: number): boolean {
    const s = this.sacked;
    while (!this.relost.isEmpty) {
      const e = this.relost.end(0);
      const start = this.firstUnsacked(Math.max(this.relost.start(0), una));
      if (start >= e) {
        this.relost.removeBelow(e);
        continue;
      }
      this.pickStart = start;
      this.pickEnd = Math.min(e, start + this.mss, this.nextSackedStart(start));
      this.relost.removeBelow(this.pickEnd);
      return true;
    }
    let limit = s.isEmpty ? una : s.last;
    if (this.mode === Recovery.Timeout) limit = Math.max(limit, this.recoveryPoint);
    limit = Math.min(limit, nxt);
    let x = Math.max(una, this.highRxt);
    if (x >= limit) return false;
    const aged = this.agedBelow(nxt, now);
    const n = s.count;
    let i = s.firstIndexEndingAfter(x);
    let below = 0;
    for (let k = 0; k < i; k++) below += s.end(k) - s.start(k);
    if (i < n && s.start(i) <= x) {
      below += s.end(i) - s.start(i);
      x = s.end(i);
      i++;
    }
    while (x < limit) {
      const holeEnd = i < n ? s.start(i) : nxt;
      const c = this.lostUpTo(x, holeEnd, s.total - below, n - i, aged);
      if (c > x) {
        this.pickStart = x;
        this.pickEnd = Math.min(c, x + this.mss);
        return true;
      }
      if (i >= n) break;
      below += s.end(i) - s.start(i);
      x = s.end(i);
      i++;
    }
    return false;
  }

  /** NextSeg rule (3): the first unSACKed data above HighRxt and below the highest SACK. */
  pickUnsacked(una: number): boolean {
    const s = this.sacked;
    if (s.isEmpty) return false;
    const x = this.firstUnsacked(Math.max(una, this.highRxt));
    if (x >= s.last) return false;
    this.pickStart = x;
    this.pickEnd = Math.min(this.nextSackedStart(x), x + this.mss);
    return true;
  }

  /** NextSeg rule (4): once per recovery, the highest unSACKed segment (a tail-loss rescue). */
  pickRescue(una: number, nxt: number): boolean {
    if (this.rescueRxt >= 0 && una <= this.rescueRxt) return false;
    if (!this.pickTail(una, nxt)) return false;
    this.rescueRxt = this.recoveryPoint;
    return true;
  }

  /** The highest unSACKed segment below `nxt` (what a tail-loss probe resends). */
  pickTail(una: number, nxt: number): boolean {
    const s = this.sacked;
    const n = s.count;
    let top = nxt;
    let floor = una;
    if (n > 0) {
      if (s.last >= nxt) {
        top = s.start(n - 1);
        if (n >= 2) floor = s.end(n - 2);
      } else {
        floor = s.last;
      }
    }
    floor = Math.max(floor, una);
    if (top <= floor) return false;
    this.pickStart = Math.max(floor, top - this.mss);
    this.pickEnd = top;
    return true;
  }

  recordRetransmission(start: number, end: number, nxt: number, now: number): void {
    this.rtxStart.push(start);
    this.rtxEnd.push(end);
    this.rtxMark.push(nxt);
    this.rtxTime.push(now);
    this.retransmitted.add(start, end);
    this.lastRetransmission = now;
    this.rtxBytes += end - start;
  }

  detectLostRetransmissions(una: number, now: number): void {
    this.rtxRecheck = Number.POSITIVE_INFINITY;
    const wait = this.wait;
    const count = this.rtxStart.length;
    if (count === 0) return;
    const s = this.sacked;
    const n = s.count;
    let idx = 0;
    let below = 0;
    let keep = 0;
    for (let r = 0; r < count; r++) {
      const start = this.rtxStart[r]!;
      const end = this.rtxEnd[r]!;
      const mark = this.rtxMark[r]!;
      const time = this.rtxTime[r]!;
      if (end <= una || s.covers(Math.max(start, una), end)) {
        this.rtxBytes -= end - start;
        continue;
      }
      while (idx < n && s.end(idx) <= mark) {
        below += s.end(idx) - s.start(idx);
        idx++;
      }
      const straddles = idx < n && s.start(idx) < mark;
      const above = s.total - below - (straddles ? mark - s.start(idx) : 0);
      const rangesAbove = n - idx - (straddles ? 1 : 0);
      if (above > this.lossBytes || rangesAbove >= this.dupThresh || (above > 0 && now >= time + wait)) {
        this.relost.add(Math.max(start, una), end);
        this.rtxBytes -= end - start;
        continue;
      }
      if (above > 0 && time + wait < this.rtxRecheck) this.rtxRecheck = time + wait;
      this.rtxStart[keep] = start;
      this.rtxEnd[keep] = end;
      this.rtxMark[keep] = mark;
      this.rtxTime[keep] = time;
      keep++;
    }
    this.rtxStart.length = this.rtxEnd.length = this.rtxMark.length = this.rtxTime.length = keep;
  }

  firstUnsacked(x: number): number {
    const i = this.sacked.indexContaining(x);
    return i >= 0 ? this.sacked.end(i) : x;
  }

  nextSackedStart(x: number): number {
    const i = this.sacked.firstIndexEndingAfter(x);
    return i < this.sacked.count ? this.sacked.start(i) : Number.POSITIVE_INFINITY;
  }
}
