/**
 * The transport layer: sans-I/O stream and datagram engines.
 * (segment, now) in; (segments out, bytes for the application, next deadline) out.
 */
export {
  StreamConnection,
  type StreamState,
  type StreamEvent,
  type StreamError,
  type StreamErrorCode,
  type StreamStats,
} from "./connection.ts";
export { streamConfig, DEFAULT_STREAM_CONFIG, MAX_RECEIVE_BUFFER, type StreamConfig } from "./config.ts";
export {
  type Segment,
  type StreamRoute,
  segmentLength,
  toPacket,
  resetFor,
  describeSegment,
} from "./segment.ts";
export { buildDatagram, parseDatagram, type Datagram } from "./datagram.ts";
export { seqAdd, seqDiff, seqLt, seqLe, seqGt, seqGe } from "./seq.ts";
