/**
 * Pilot addresses: 48 bits, `[u16 network][u32 node]`, written `N:NNNN.HHHH.LLLL`
 * (decimal network, then the network again as 4 hex digits, then the node's
 * high and low 16 bits). An Address is held as a plain number
 * (network * 2^32 + node) so it is cheap to compare and to use as a Map key.
 */
import { fail, ok, type Result } from "./result.ts";

export type Address = number & { readonly __brand: "PilotAddress" };

export const ADDRESS_SIZE = 6;
const TWO_32 = 0x1_0000_0000;

export function addressOf(network: number, node: number): Address {
  if (!Number.isInteger(network) || network < 0 || network > 0xffff) {
    throw new RangeError(`network ${network} is not a u16`);
  }
  if (!Number.isInteger(node) || node < 0 || node > 0xffff_ffff) {
    throw new RangeError(`node ${node} is not a u32`);
  }
  return (network * TWO_32 + node) as Address;
}

export function networkOf(a: Address): number {
  return Math.floor(a / TWO_32);
}

export function nodeOf(a: Address): number {
  return a % TWO_32;
}

/** The unspecified address `0:0000.0000.0000`. */
export const ADDRESS_ZERO = addressOf(0, 0);
/** Names the reference gives node ids 1-3 on network 0. Pilot never assigns them to agents. */
export const ADDRESS_REGISTRY = addressOf(0, 1);
export const ADDRESS_BEACON = addressOf(0, 2);
export const ADDRESS_NAMESERVER = addressOf(0, 3);
/** Node ids 0-3 are reserved and never handed to an agent. */
export const FIRST_ASSIGNABLE_NODE = 4;
export const BROADCAST_NODE = 0xffff_ffff;

export function broadcastAddress(network: number): Address {
  return addressOf(network, BROADCAST_NODE);
}

export function isZeroAddress(a: Address): boolean {
  return a === ADDRESS_ZERO;
}

export function isBroadcastAddress(a: Address): boolean {
  return nodeOf(a) === BROADCAST_NODE;
}

export function isReservedNode(node: number): boolean {
  return node < FIRST_ASSIGNABLE_NODE || node === BROADCAST_NODE;
}

function hex4(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, "0");
}

export function formatAddress(a: Address): string {
  const network = networkOf(a);
  const node = nodeOf(a);
  return `${network}:${hex4(network)}.${hex4(node >>> 16)}.${hex4(node & 0xffff)}`;
}

const DECIMAL = /^[0-9]+$/;
const HEX4 = /^[0-9A-Fa-f]{4}$/;

/** Parses `N:NNNN.HHHH.LLLL`; the first hex group must repeat the network. */
export function parseAddress(text: string): Result<Address> {
  const colon = text.indexOf(":");
  if (colon < 0) return fail("invalid_address", `"${text}" is not an address: expected N:NNNN.HHHH.LLLL`);
  const netText = text.slice(0, colon);
  const rest = text.slice(colon + 1);
  if (!DECIMAL.test(netText) || netText.length > 5) {
    return fail("invalid_address", `"${text}": network must be a decimal number 0-65535`);
  }
  const network = Number(netText);
  if (network > 0xffff) return fail("invalid_address", `"${text}": network ${network} is larger than 65535`);
  const groups = rest.split(".");
  if (groups.length !== 3) return fail("invalid_address", `"${text}": expected three 4-digit hex groups after ":"`);
  const values: number[] = [];
  for (const g of groups) {
    if (!HEX4.test(g)) return fail("invalid_address", `"${text}": "${g}" is not a 4-digit hex group`);
    values.push(parseInt(g, 16));
  }
  const [netGroup, high, low] = values as [number, number, number];
  if (netGroup !== network) {
    return fail("invalid_address", `"${text}": the first hex group must repeat the network (${hex4(network)})`);
  }
  return ok(addressOf(network, high * 0x10000 + low));
}

/** Writes the 6-byte binary form at `offset`. */
export function writeAddress(view: DataView, offset: number, a: Address): void {
  view.setUint16(offset, networkOf(a));
  view.setUint32(offset + 2, nodeOf(a));
}

/** Reads the 6-byte binary form; the caller has checked the bounds. */
export function readAddress(view: DataView, offset: number): Address {
  return (view.getUint16(offset) * TWO_32 + view.getUint32(offset + 2)) as Address;
}
