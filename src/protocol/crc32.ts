/**
 * CRC-32 (IEEE 802.3 / zlib polynomial) through the runtime's native zlib.
 * `crc32(data, previous)` continues a running checksum, so a region can be
 * skipped without copying.
 */
import zlib from "node:zlib";

const native = (zlib as unknown as { crc32: (data: Uint8Array, value?: number) => number }).crc32;

export function crc32(data: Uint8Array, previous = 0): number {
  return native(data, previous) >>> 0;
}
