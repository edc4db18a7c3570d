/**
 * Size budget of one UDP datagram on the tunnel. Everything is sized so that a
 * full frame stays at or under MAX_UDP_PAYLOAD: no IP fragmentation, ever.
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
/** Largest stream payload per segment. */
export const STREAM_MSS = 1240;
/** Largest datagram payload (datagrams carry no options block). */
export const MAX_DATAGRAM_PAYLOAD = STREAM_MSS + MAX_OPTIONS_BLOCK;
