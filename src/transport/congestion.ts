/**
 * Congestion control: NewReno with SACK-based loss recovery (RFC 5681, RFC 6675)
 * and appropriate byte counting (RFC 3465) without the per-ACK limit L: a
 * receiver that handles a burst of segments in one batch answers with one
 * stretch ACK, and slow start should still double per round trip. (L guards
 * against ACK division by a misbehaving receiver; ours is authenticated.)
 *
 * Why NewReno and not CUBIC: the engine's first job is a loopback / LAN overlay
 * where the receive window, not the congestion window, is the limit, and NewReno
 * with an RFC 6675 scoreboard is small, well specified and easy to test exactly
 * (cwnd = 1 MSS after a timeout, cwnd = ssthresh after recovery). CUBIC would
 * help long fat WAN paths; the engine only calls the four methods below, so a
 * CUBIC controller can replace this one without touching the state machine.
 *
 *   onAck(bytes, cwndLimited)   cumulative ACK progress outside fast recovery
 *   onLossDetected(flight)      entering fast recovery: ssthresh = cwnd = max(flight/2, 2 MSS)
 *   onRecoveryEnd()             leaving fast recovery: cwnd deflated to ssthresh
 *   onTimeout(flight, repeated) RTO: ssthresh halved (once per episode), cwnd = 1 MSS
 */
const MAX_CWND = 1 << 30;

export class NewReno {
  cwnd: number;
  ssthresh = Number.POSITIVE_INFINITY;
  private acked = 0;

  constructor(
    private mss: number,
    initialWindowSegments: number,
  ) {
    this.cwnd = initialWindowSegments * mss;
  }

  /**
   * The segment size changed (path MTU): later increments and floors use it. cwnd (bytes)
   * stays, but never below two segments of the new size (RFC 9002 §7.2's minimum window):
   * a window smaller than one segment would let nothing out, and with nothing in flight no
   * ACK would ever come to open it.
   */
  setMss(mss: number): void {
    this.mss = mss;
    if (this.cwnd < 2 * mss) this.cwnd = 2 * mss;
  }

  onAck(bytes: number, cwndLimited: boolean): void {
    if (!cwndLimited || bytes <= 0) return;
    if (this.cwnd < this.ssthresh) {
      this.cwnd += bytes;
    } else {
      this.acked += bytes;
      if (this.acked >= this.cwnd) {
        this.acked -= this.cwnd;
        this.cwnd += this.mss;
      }
    }
    if (this.cwnd > MAX_CWND) this.cwnd = MAX_CWND;
  }

  onLossDetected(flight: number): void {
    this.ssthresh = Math.max(Math.floor(flight / 2), 2 * this.mss);
    this.cwnd = this.ssthresh;
    this.acked = 0;
  }

  onRecoveryEnd(): void {
    this.cwnd = this.ssthresh;
  }

  onTimeout(flight: number, repeated: boolean): void {
    if (!repeated) this.ssthresh = Math.max(Math.floor(flight / 2), 2 * this.mss);
    this.cwnd = this.mss;
    this.acked = 0;
  }
}
