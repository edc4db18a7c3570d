/**
 * Size budget of one UDP datagram on the tunnel. The base: every path starts
 * with (and relayed paths keep) frames of at most MAX_UDP_PAYLOAD, which no
 * internet path fragments in practice. A direct path may carry larger frames,
 * up to LARGEST_DATA_FRAME, once path MTU discovery (tunnel/path-mtu.ts) has
 * had a probe of that size, sent with don't-fragment, acknowledged.
 *
 *   UDP payload <= 1400
 *     relay envelope (reserved for NAT traversal)   <= 40
 *     tunnel data frame header                      16
 *     AES-GCM tag                                   16
 *     Pilot header                                  34
 *     options block (SACK, up to 4 blocks)          <= 35
 *     stream data (MSS)                             1240
 */
export const MAX_UDP_PAYLOAD = 1400;
export const RELAY_ENVELOPE_RESERVE = 40;
export const DATA_FRAME_OVERHEAD = 16 + 16;
export const MAX_OPTIONS_BLOCK = 1 + 2 + 8 * 4;
/** Largest stream payload per segment at the base size. */
export const STREAM_MSS = 1240;
/** Bytes of a data frame that are not stream data (tunnel header, tag, Pilot header, options, slack): base frame 1360 - STREAM_MSS. */
export const STREAM_FRAME_OVERHEAD = MAX_UDP_PAYLOAD - RELAY_ENVELOPE_RESERVE - STREAM_MSS;
/**
 * Largest stream payload per segment on any path (a discovered path MTU never
 * takes segments beyond this). Chosen by measurement on loopback (docs/PERFORMANCE.md).
 */
export const LARGEST_STREAM_MSS = 16 * 1024;
/** The stream payload per segment that fits a data frame of `frameSize` bytes. */
export function streamMssForFrame(frameSize: number): number {
  return Math.min(LARGEST_STREAM_MSS, Math.max(STREAM_MSS, frameSize - STREAM_FRAME_OVERHEAD));
}
/** Largest datagram payload (datagrams carry no options block). */
export const MAX_DATAGRAM_PAYLOAD = STREAM_MSS + MAX_OPTIONS_BLOCK;
