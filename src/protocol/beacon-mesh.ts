/**
 * Beacon-to-beacon messages (pure codec): the beacons of one deployment tell
 * each other where a node is registered, and hand each other datagrams for
 * the nodes registered with them (docs/DEPLOYMENT.md, "The beacons").
 *
 *   mesh_announce (0x2B), 64 bytes:
 *     [type][0 0 0][node u32][registered_at u64][sent_at u64][ttl_ms u32][port u16][ip 16 (IPv4-mapped)][0 0][tag 16]
 *   mesh_deliver (0x2C), 32 bytes + the inner datagram:
 *     [type][0 0 0][dest u32][sent_at u64][tag 16][inner: a relay_deliver or a signed punch for `dest`]
 *
 * `tag` is a MAC by the deployment's mesh key over everything before it
 * (announce) or over the header before it and the inner datagram (deliver);
 * computing and checking it lives outside this module (src/beacon/mesh.ts).
 * Daemons never receive these types: beacons send them only to each other.
 */
import { fail, ok, type Result } from "./result.ts";
import { readU32, readU64, writeU32, writeU64 } from "./beacon-message.ts";

export const MeshType = { Announce: 0x2b, Deliver: 0x2c } as const;
export const MESH_TAG_SIZE = 16;
export const MESH_ANNOUNCE_SIZE = 64;
export const MESH_ANNOUNCE_TAG_AT = MESH_ANNOUNCE_SIZE - MESH_TAG_SIZE;
export const MESH_DELIVER_HEADER_SIZE = 32;
export const MESH_DELIVER_TAG_AT = 16;

export interface MeshAnnounce {
  readonly node: number;
  /** The node's own timestamp of the registration announced (the later one wins). */
  readonly registeredAt: number;
  /** The announcing beacon's clock when sent. */
  readonly sentAt: number;
  readonly ttlMs: number;
  /** The node's registered address as its beacon sees it; port 0 for a node on a stream (relay only). */
  readonly ip: string;
  readonly port: number;
}

export interface MeshDeliverHeader {
  readonly dest: number;
  readonly sentAt: number;
}

/** 16 bytes: IPv6 as is, IPv4 as ::ffff:a.b.c.d; "" (no address) as zeros. */
export function meshIpBytes(ip: string): Uint8Array {
  const out = new Uint8Array(16);
  if (ip === "") return out;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (v4) {
    out[10] = 0xff;
    out[11] = 0xff;
    for (let i = 0; i < 4; i++) {
      const n = Number(v4[i + 1]);
      if (n > 255) throw new RangeError(`bad IPv4 address ${ip}`);
      out[12 + i] = n;
    }
    return out;
  }
  const halves = ip.split("::");
  if (halves.length > 2) throw new RangeError(`bad IPv6 address ${ip}`);
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const groups = halves.length === 2 ? [...head, ...Array(8 - head.length - tail.length).fill("0"), ...tail] : head;
  if (groups.length !== 8) throw new RangeError(`bad IPv6 address ${ip}`);
  groups.forEach((g, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new RangeError(`bad IPv6 address ${ip}`);
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

export function meshIpString(b: Uint8Array): string {
  if (b.every((x) => x === 0)) return "";
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

/** The announce without its tag (the tag goes at MESH_ANNOUNCE_TAG_AT). */
export function encodeMeshAnnounce(a: MeshAnnounce): Uint8Array {
  const out = new Uint8Array(MESH_ANNOUNCE_SIZE);
  out[0] = MeshType.Announce;
  writeU32(out, 4, a.node);
  writeU64(out, 8, a.registeredAt);
  writeU64(out, 16, a.sentAt);
  writeU32(out, 24, a.ttlMs);
  out[28] = a.port >> 8;
  out[29] = a.port & 0xff;
  out.set(meshIpBytes(a.ip), 30);
  return out;
}

export function decodeMeshAnnounce(d: Uint8Array): Result<MeshAnnounce> {
  if (d.length !== MESH_ANNOUNCE_SIZE || d[0] !== MeshType.Announce) return fail("bad_length", "not a mesh announce");
  if (d[1] !== 0 || d[2] !== 0 || d[3] !== 0 || d[46] !== 0 || d[47] !== 0) return fail("bad_padding", "non-zero padding");
  return ok({
    node: readU32(d, 4),
    registeredAt: readU64(d, 8),
    sentAt: readU64(d, 16),
    ttlMs: readU32(d, 24),
    port: (d[28]! << 8) | d[29]!,
    ip: meshIpString(d.subarray(30, 46)),
  });
}

/** A mesh_deliver around `inner`, its tag still zero (set at MESH_DELIVER_TAG_AT). */
export function encodeMeshDeliver(h: MeshDeliverHeader, inner: Uint8Array): Uint8Array {
  const out = new Uint8Array(MESH_DELIVER_HEADER_SIZE + inner.length);
  out[0] = MeshType.Deliver;
  writeU32(out, 4, h.dest);
  writeU64(out, 8, h.sentAt);
  out.set(inner, MESH_DELIVER_HEADER_SIZE);
  return out;
}

export function decodeMeshDeliver(d: Uint8Array): Result<MeshDeliverHeader & { inner: Uint8Array }> {
  if (d.length <= MESH_DELIVER_HEADER_SIZE || d[0] !== MeshType.Deliver) return fail("bad_length", "not a mesh deliver");
  if (d[1] !== 0 || d[2] !== 0 || d[3] !== 0) return fail("bad_padding", "non-zero padding");
  return ok({ dest: readU32(d, 4), sentAt: readU64(d, 8), inner: d.subarray(MESH_DELIVER_HEADER_SIZE) });
}
