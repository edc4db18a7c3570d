/** A socket address is an Address plus a virtual port: `N:NNNN.HHHH.LLLL:PORT`. */
import { formatAddress, parseAddress, type Address } from "./address.ts";
import { parsePort } from "./ports.ts";
import { fail, ok, type Result } from "./result.ts";

export interface SocketAddress {
  readonly address: Address;
  readonly port: number;
}

export function formatSocketAddress(s: SocketAddress): string {
  return `${formatAddress(s.address)}:${s.port}`;
}

/** Splits on the last ":"; the left side must be a full address, the right a decimal port. */
export function parseSocketAddress(text: string): Result<SocketAddress> {
  const colon = text.lastIndexOf(":");
  if (colon < 0) return fail("invalid_socket_address", `"${text}" is not ADDRESS:PORT`);
  const address = parseAddress(text.slice(0, colon));
  if (!address.ok) return address;
  const port = parsePort(text.slice(colon + 1));
  if (!port.ok) return port;
  return ok({ address: address.value, port: port.value });
}
