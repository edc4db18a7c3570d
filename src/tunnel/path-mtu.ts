/**
 * Datagram packetization-layer path MTU discovery (DPLPMTUD, RFC 8899) for one
 * tunnel path, as a pure state machine: the Peer feeds it the time, path
 * changes, authenticated probe acks and loss signals, and sends the probes it
 * asks for. Sizes are tunnel data frames (the whole UDP payload on a direct
 * path).
 *
 *   const m = new PathMtu({ base, probeTimeout?, maxProbes?, raiseInterval? })
 *   m.reset(candidates, now)     a new path: the size drops to base at once; candidates (ascending,
 *                                each > base) are what to search; [] (relay, disabled): stay at base
 *   m.pollProbe(now)             { id, size } of a probe to send now (DF, padded to size), or null
 *   m.onAck(id, size, now)       an authenticated ack; true when the usable size changed. An ack that
 *                                does not name the probe in flight (id and size) is ignored.
 *   m.onProbeRefused(size, now)  the local stack refused the probe (EMSGSIZE): that size fails at once
 *   m.onBlackHole(now)           traffic at the current size stopped getting through: back to base and
 *                                search again; true when the size changed
 *   m.postpone(until) / m.resume(now)   no session to carry the due probe yet / a session again
 *   m.tick(now) / m.nextTimeout()   probe loss (after probeTimeout, maxProbes times) and the raise timer
 *   m.size / m.state / m.probesSent / m.blackHoles
 *
 * States (RFC 8899 §5.2): "disabled" (no candidates: relay paths, PILOT_PMTU=0), "base" (confirming
 * that base-size probes get through with DF), "searching" (probing the candidates upward), "complete"
 * (the search ended; the raise timer searches again after raiseInterval), "error" (even base-size
 * probes do not get through with DF: the path is narrower than the base; frames stay at base, sent
 * without DF as always, and the base is tried again after raiseInterval).
 *
 * A size counts only when the ack of a probe of exactly that size came back.
 */

export type PathMtuState = "disabled" | "base" | "searching" | "complete" | "error";

export interface PathMtuOptions {
  /** The size every path starts with and falls back to (never probed above without an ack). */
  readonly base: number;
  /** A probe not acked within this long counts as lost (ms). */
  readonly probeTimeout?: number;
  /** Lost probes of one size before that size fails (RFC 8899 MAX_PROBES). */
  readonly maxProbes?: number;
  /** After a completed (or failed) search, search upward again this long later (RFC: 600 s). */
  readonly raiseInterval?: number;
}

export const DEFAULT_PROBE_TIMEOUT = 1_000;
export const DEFAULT_MAX_PROBES = 3;
export const DEFAULT_RAISE_INTERVAL = 600_000;

export interface PathMtuProbe {
  readonly id: number;
  readonly size: number;
}

export class PathMtu {
  readonly base: number;
  private readonly probeTimeout: number;
  private readonly maxProbes: number;
  private readonly raiseInterval: number;
  private candidates: readonly number[] = [];
  private stateValue: PathMtuState = "disabled";
  private sizeValue: number;
  /** Index into `candidates` of the size being probed (searching). */
  private next = 0;
  /** Size of the probe in flight, its id, how many times it has been sent, and when it times out. */
  private probeSize = 0;
  private probeId = 0;
  private probeCount = 0;
  private probeDeadline = Infinity;
  /** Send a probe (the first, or a retry) at this time. */
  private sendAt = Infinity;
  private raiseAt = Infinity;
  private nextId = 1;
  probesSent = 0;
  blackHoles = 0;

  constructor(options: PathMtuOptions) {
    if (!Number.isInteger(options.base) || options.base <= 0) throw new RangeError("base must be a positive integer");
    this.base = options.base;
    this.sizeValue = options.base;
    this.probeTimeout = options.probeTimeout ?? DEFAULT_PROBE_TIMEOUT;
    this.maxProbes = options.maxProbes ?? DEFAULT_MAX_PROBES;
    this.raiseInterval = options.raiseInterval ?? DEFAULT_RAISE_INTERVAL;
  }

  get state(): PathMtuState {
    return this.stateValue;
  }

  /** The largest frame that may be sent on this path now. */
  get size(): number {
    return this.sizeValue;
  }

  reset(candidates: readonly number[], now: number): void {
    this.candidates = candidates.filter((c, i) => Number.isInteger(c) && c > this.base && (i === 0 || c > candidates[i - 1]!));
    this.sizeValue = this.base;
    this.raiseAt = Infinity;
    this.clearProbe();
    if (this.candidates.length === 0) {
      this.stateValue = "disabled";
      return;
    }
    this.stateValue = "base";
    this.startProbe(this.base, now);
  }

  pollProbe(now: number): PathMtuProbe | null {
    if (this.probeSize === 0 || now < this.sendAt) return null;
    this.sendAt = Infinity;
    this.probeCount++;
    this.probeId = this.nextId++;
    this.probeDeadline = now + this.probeTimeout;
    this.probesSent++;
    return { id: this.probeId, size: this.probeSize };
  }

  /** No session can carry the probe that is due: ask again at `until`. */
  postpone(until: number): void {
    if (this.probeSize !== 0 && this.probeDeadline === Infinity && this.sendAt < until) this.sendAt = until;
  }

  /** A session can carry probes again: a probe that waits goes now. */
  resume(now: number): void {
    if (this.probeSize !== 0 && this.probeDeadline === Infinity && this.sendAt > now) this.sendAt = now;
  }

  onAck(id: number, size: number, now: number): boolean {
    if (this.probeSize === 0 || id !== this.probeId || size !== this.probeSize) return false;
    this.clearProbe();
    if (this.stateValue === "base") {
      this.stateValue = "searching";
      this.next = 0;
      this.probeNext(now);
      return false;
    }
    const changed = size !== this.sizeValue;
    this.sizeValue = size;
    this.next++;
    this.probeNext(now);
    return changed;
  }

  onProbeRefused(size: number, now: number): void {
    if (this.probeSize !== 0 && size === this.probeSize) this.probeFailed(now);
  }

  onBlackHole(now: number): boolean {
    if (this.stateValue === "disabled" || this.sizeValue <= this.base) return false;
    this.blackHoles++;
    this.sizeValue = this.base;
    this.raiseAt = Infinity;
    this.clearProbe();
    this.stateValue = "base";
    this.startProbe(this.base, now);
    return true;
  }

  nextTimeout(): number | null {
    const t = Math.min(this.sendAt, this.probeDeadline, this.raiseAt);
    return t === Infinity ? null : t;
  }

  tick(now: number): void {
    if (now >= this.probeDeadline) {
      this.probeDeadline = Infinity;
      if (this.probeCount >= this.maxProbes) this.probeFailed(now);
      else this.sendAt = now;
    }
    if (now >= this.raiseAt) {
      this.raiseAt = Infinity;
      if (this.stateValue === "error") {
        this.stateValue = "base";
        this.startProbe(this.base, now);
      } else if (this.stateValue === "complete") {
        this.stateValue = "searching";
        this.next = this.candidates.findIndex((c) => c > this.sizeValue);
        if (this.next < 0) this.next = this.candidates.length;
        this.probeNext(now);
      }
    }
  }

  private probeFailed(now: number): void {
    this.clearProbe();
    if (this.stateValue === "base") {
      this.stateValue = "error";
      this.raiseAt = now + this.raiseInterval;
      return;
    }
    // The largest size acked so far stands; larger candidates are not tried before the raise timer.
    this.complete(now);
  }

  private probeNext(now: number): void {
    if (this.next >= this.candidates.length) return this.complete(now);
    this.startProbe(this.candidates[this.next]!, now);
  }

  private complete(now: number): void {
    this.stateValue = "complete";
    this.raiseAt = this.sizeValue < this.candidates[this.candidates.length - 1]! ? now + this.raiseInterval : Infinity;
  }

  private startProbe(size: number, now: number): void {
    this.probeSize = size;
    this.probeCount = 0;
    this.probeDeadline = Infinity;
    this.sendAt = now;
  }

  private clearProbe(): void {
    this.probeSize = 0;
    this.probeCount = 0;
    this.probeDeadline = Infinity;
    this.sendAt = Infinity;
  }
}
