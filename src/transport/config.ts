/**
 * Stream engine settings. Times are milliseconds, sizes bytes.
 *
 *   streamConfig(overrides?): StreamConfig   defaults + overrides, validated (throws RangeError)
 *   DEFAULT_STREAM_CONFIG                    the defaults, documented field by field below
 */
import { LARGEST_STREAM_MSS, STREAM_MSS } from "../protocol/limits.ts";
import { WINDOW_UNIT } from "../protocol/packet.ts";

export interface StreamConfig {
  /**
   * Largest payload per segment. STREAM_MSS (the base) keeps frames within the base
   * datagram; the data plane raises it (setMss) to what the tunnel path proved, up to
   * LARGEST_STREAM_MSS.
   */
  readonly mss: number;
  /**
   * The most the application may have written and not yet had acknowledged. The
   * send buffer starts at `initialSendBuffer` and grows toward this while the
   * buffer, not the network, limits sending (send autotuning).
   */
  readonly sendBufferSize: number;
  /**
   * The most we buffer for the application (in order + out of order): the largest
   * window we advertise. The receive buffer starts at `initialReceiveBuffer` and grows
   * toward this while the peer's sending is limited by our window and the application
   * keeps reading (receive autotuning).
   */
  readonly receiveBufferSize: number;
  /** Starting sizes of the two buffers (each capped by its maximum above). */
  readonly initialSendBuffer: number;
  readonly initialReceiveBuffer: number;
  /**
   * The least either buffer gets even when the budget (BufferAllocator) has nothing
   * left, so a connection always works, slowly.
   */
  readonly minBuffer: number;
  /** Initial congestion window in segments (RFC 6928). */
  readonly initialWindow: number;
  /**
   * RFC 6298 retransmission timeout: initial value and clamps. The RTO also adds the
   * peer's maximum ACK delay (delayedAckTimeout), so the 50 ms floor stays clear of
   * delayed ACKs while a lost tail on a fast path costs tens of ms, not 200.
   */
  readonly initialRto: number;
  /**
   * A round-trip time already measured on this path (ms), e.g. by the tunnel's
   * handshake: the connection starts from it instead of the blind initialRto.
   * Undefined or 0: no estimate.
   */
  readonly initialRtt?: number;
  readonly minRto: number;
  readonly maxRto: number;
  /** Longest an ACK is held back for a second segment (RFC 5681 §4.2 allows up to 500). */
  readonly delayedAckTimeout: number;
  /** Disable Nagle's algorithm: send small segments even while data is unacknowledged. */
  readonly noDelay: boolean;
  /** How long TIME-WAIT lasts: 2 x MSL, with MSL = 15 s on this overlay. */
  readonly timeWait: number;
  /** Give up opening after this long without completing the handshake. */
  readonly connectTimeout: number;
  /** RFC 5482 user timeout: fail when sent data (or a window probe) goes unanswered this long. */
  readonly userTimeout: number;
  /** Also fail after this many consecutive retransmission timeouts. */
  readonly maxRetransmits: number;
  /** Idle time before the first keepalive probe; 0 disables keepalive. */
  readonly keepaliveIdle: number;
  /** Time between unanswered keepalive probes. */
  readonly keepaliveInterval: number;
  /** Unanswered probes after which the connection fails. */
  readonly keepaliveCount: number;
  /** Cap on the zero-window probe interval (the persist timer backs off up to this). */
  readonly maxPersistInterval: number;
  /**
   * Fail when the peer keeps its window closed this long while we have data for it
   * (it answers probes but never reads): what it makes us hold is released. 0: never.
   */
  readonly zeroWindowTimeout: number;
  /** Duplicate-ACK / SACK threshold for loss detection (RFC 6675 DupThresh). */
  readonly dupThresh: number;
}

export const DEFAULT_STREAM_CONFIG: StreamConfig = Object.freeze({
  mss: STREAM_MSS,
  sendBufferSize: 4 * 1024 * 1024,
  receiveBufferSize: 4 * 1024 * 1024,
  initialSendBuffer: 64 * 1024,
  initialReceiveBuffer: 64 * 1024,
  minBuffer: 16 * 1024,
  initialWindow: 10,
  initialRto: 1000,
  minRto: 50,
  maxRto: 60_000,
  delayedAckTimeout: 40,
  noDelay: false,
  timeWait: 30_000,
  connectTimeout: 20_000,
  userTimeout: 60_000,
  maxRetransmits: 15,
  keepaliveIdle: 30_000,
  keepaliveInterval: 10_000,
  keepaliveCount: 3,
  maxPersistInterval: 30_000,
  zeroWindowTimeout: 120_000,
  dupThresh: 3,
});

/** Largest receive buffer the u16 window field can describe. */
export const MAX_RECEIVE_BUFFER = 0xffff * WINDOW_UNIT;

export function streamConfig(overrides: Partial<StreamConfig> = {}): StreamConfig {
  const c: StreamConfig = { ...DEFAULT_STREAM_CONFIG, ...overrides };
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new RangeError(`stream config: ${what}`);
  };
  check(Number.isInteger(c.mss) && c.mss >= 64 && c.mss <= LARGEST_STREAM_MSS, `mss must be an integer in 64..${LARGEST_STREAM_MSS}`);
  check(c.sendBufferSize >= c.mss, "sendBufferSize must hold at least one segment");
  check(
    c.receiveBufferSize >= 2 * WINDOW_UNIT && c.receiveBufferSize <= MAX_RECEIVE_BUFFER,
    `receiveBufferSize must be in ${2 * WINDOW_UNIT}..${MAX_RECEIVE_BUFFER}`,
  );
  check(c.initialSendBuffer > 0 && c.initialReceiveBuffer > 0 && c.minBuffer > 0, "initial and minimum buffer sizes must be > 0");
  check(c.zeroWindowTimeout >= 0, "zeroWindowTimeout must be >= 0");
  check(c.initialWindow >= 1, "initialWindow must be at least 1 segment");
  check(c.minRto > 0 && c.minRto <= c.initialRto && c.initialRto <= c.maxRto, "need 0 < minRto <= initialRto <= maxRto");
  check(c.delayedAckTimeout >= 0, "delayedAckTimeout must be >= 0");
  check(c.timeWait >= 0, "timeWait must be >= 0");
  check(c.connectTimeout > 0 && c.userTimeout > 0, "connectTimeout and userTimeout must be > 0");
  check(c.maxRetransmits >= 1, "maxRetransmits must be >= 1");
  check(c.keepaliveIdle >= 0 && c.keepaliveInterval > 0 && c.keepaliveCount >= 1, "bad keepalive settings");
  check(c.maxPersistInterval > 0, "maxPersistInterval must be > 0");
  check(Number.isInteger(c.dupThresh) && c.dupThresh >= 1, "dupThresh must be a positive integer");
  return c;
}
