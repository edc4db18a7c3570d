/**
 * RFC 6298 round-trip estimator and retransmission timeout, with the peer's
 * maximum ACK delay added the way QUIC's PTO does (RFC 9002 §6.2.1): on an
 * overlay path of a millisecond a 200 ms floor would make every lost tail
 * cost 200 ms, while a small floor alone fires spuriously whenever the peer
 * holds a delayed ACK. RTO = max(minRto, SRTT + max(G, 4 RTTVAR) + maxAckDelay).
 *
 *   sample(r)     feed one unambiguous RTT measurement (Karn: never a retransmitted segment)
 *   rto           current timeout, including exponential backoff
 *   backOff()     double after a timeout (RFC 6298 5.5); a new sample clears the backoff
 *   progressed()  new data was acknowledged: the backoff ends too (see below)
 *   srtt/rttvar   smoothed RTT and variance (0 before the first sample)
 */

/** G in RFC 6298: our clock is a float in milliseconds, so 1 ms is plenty. */
export const CLOCK_GRANULARITY = 1;
const MAX_BACKOFF_EXPONENT = 30;

export class RttEstimator {
  srtt = 0;
  rttvar = 0;
  hasSample = false;
  /** Consecutive timeouts since the last sample. */
  backoff = 0;
  private base: number;

  constructor(
    initialRto: number,
    private readonly minRto: number,
    private readonly maxRto: number,
    /** How long the peer may hold back an ACK (its delayed-ACK timer). */
    private readonly maxAckDelay = 0,
  ) {
    this.base = initialRto;
  }

  get rto(): number {
    return Math.min(this.maxRto, this.base * 2 ** Math.min(this.backoff, MAX_BACKOFF_EXPONENT));
  }

  sample(r: number): void {
    if (!(r >= 0)) return;
    if (!this.hasSample) {
      // The first sample of this connection replaces any seed (RFC 6298 2.2).
      this.srtt = r;
      this.rttvar = r / 2;
      this.hasSample = true;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.base = Math.min(this.maxRto, Math.max(this.minRto, this.srtt + Math.max(CLOCK_GRANULARITY, 4 * this.rttvar) + this.maxAckDelay));
    this.backoff = 0;
  }

  /**
   * Starts from a round-trip time measured elsewhere on the same path (not a
   * sample of this connection: the first real sample still counts fully).
   */
  seed(r: number): void {
    if (!(r > 0) || this.hasSample) return;
    this.srtt = r;
    this.rttvar = r / 2;
    this.base = Math.min(this.maxRto, Math.max(this.minRto, this.srtt + Math.max(CLOCK_GRANULARITY, 4 * this.rttvar) + this.maxAckDelay));
  }

  backOff(): void {
    this.backoff++;
  }

  /**
   * An acknowledgement of new data: the path delivers, so the backoff ends
   * even without a sample (QUIC resets its PTO backoff on any acknowledgement
   * the same way, RFC 9002 §6.2.1). Karn's rule alone is not enough under
   * heavy loss: after a timeout every ACK covers a retransmitted segment and
   * yields no sample, so the timer kept doubling towards a minute while data
   * was still flowing, and the retransmission limit then killed a live
   * connection. The base timeout keeps its last sampled value; if the path
   * really slowed down, the first clean segment's sample corrects it.
   */
  progressed(): void {
    this.backoff = 0;
  }
}
