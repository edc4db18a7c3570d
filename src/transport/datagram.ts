/**
 * Datagrams: unreliable, unordered messages with the same addressing as streams
 * (protocol 0x02). No connection, no sequence numbers, no options block.
 *
 *   buildDatagram(from, to, payload): Result<Packet>   rejects payloads over MAX_DATAGRAM_PAYLOAD
 *   parseDatagram(packet): Result<Datagram>            accepts only a well-formed datagram packet
 */
import { MAX_DATAGRAM_PAYLOAD } from "../protocol/limits.ts";
import { Protocol, type Packet } from "../protocol/packet.ts";
import { isValidPort } from "../protocol/ports.ts";
import { fail, ok, type Result } from "../protocol/result.ts";
import type { SocketAddress } from "../protocol/socket-address.ts";

export interface Datagram {
  readonly from: SocketAddress;
  readonly to: SocketAddress;
  readonly payload: Uint8Array;
}

const NO_SACK = Object.freeze([]);

export function buildDatagram(from: SocketAddress, to: SocketAddress, payload: Uint8Array): Result<Packet> {
  if (payload.length > MAX_DATAGRAM_PAYLOAD) {
    return fail("datagram_too_large", `datagram of ${payload.length} bytes exceeds the ${MAX_DATAGRAM_PAYLOAD}-byte limit`);
  }
  if (!isValidPort(from.port) || !isValidPort(to.port)) return fail("bad_port", "datagram ports must be 0..65535");
  return ok({
    protocol: Protocol.Datagram,
    flags: 0,
    src: from.address,
    dst: to.address,
    srcPort: from.port,
    dstPort: to.port,
    seq: 0,
    ack: 0,
    window: 0,
    sack: NO_SACK,
    payload,
  });
}

export function parseDatagram(packet: Packet): Result<Datagram> {
  if (packet.protocol !== Protocol.Datagram) return fail("not_datagram", `protocol ${packet.protocol} is not a datagram`);
  if (packet.flags !== 0) return fail("bad_flags", "datagrams carry no flags");
  if (packet.payload.length > MAX_DATAGRAM_PAYLOAD) {
    return fail("datagram_too_large", `datagram of ${packet.payload.length} bytes exceeds the ${MAX_DATAGRAM_PAYLOAD}-byte limit`);
  }
  return ok({
    from: { address: packet.src, port: packet.srcPort },
    to: { address: packet.dst, port: packet.dstPort },
    payload: packet.payload,
  });
}
