/** Virtual ports: a space of its own, separate from the OS's TCP/UDP ports. */
import { fail, ok, type Result } from "./result.ts";

export const PORT_MIN = 0;
export const PORT_MAX = 0xffff;

/** 0-1023 well-known, 1024-49151 registered, 49152-65535 ephemeral (dial-side ports). */
export const WELL_KNOWN_MAX = 1023;
export const REGISTERED_MIN = 1024;
export const REGISTERED_MAX = 49151;
export const EPHEMERAL_MIN = 49152;
export const EPHEMERAL_MAX = 65535;

export const WellKnownPort = {
  Ping: 0,
  Control: 1,
  Echo: 7,
  Nameserver: 53,
  Http: 80,
  Secure: 443,
  Handshake: 444,
  StdIO: 1000,
  DataExchange: 1001,
  EventStream: 1002,
  TaskSubmit: 1003,
} as const;

export type PortRange = "well-known" | "registered" | "ephemeral";

export function portRange(port: number): PortRange {
  if (port <= WELL_KNOWN_MAX) return "well-known";
  if (port <= REGISTERED_MAX) return "registered";
  return "ephemeral";
}

export function isEphemeralPort(port: number): boolean {
  return port >= EPHEMERAL_MIN && port <= EPHEMERAL_MAX;
}

export function isValidPort(port: number): boolean {
  return Number.isInteger(port) && port >= PORT_MIN && port <= PORT_MAX;
}

/** Parses a decimal port 0-65535 from untrusted text. */
export function parsePort(text: string): Result<number> {
  if (!/^[0-9]{1,5}$/.test(text)) return fail("invalid_port", `"${text}" is not a port (0-65535)`);
  const port = Number(text);
  if (port > PORT_MAX) return fail("invalid_port", `port ${port} is larger than 65535`);
  return ok(port);
}

/** Parses a comma-separated port list such as `80,443,8000-8010`. */
export function parsePortList(text: string, maxPorts = 1024): Result<number[]> {
  const ports = new Set<number>();
  for (const part of text.split(",")) {
    const item = part.trim();
    if (item === "") return fail("invalid_port", `empty entry in port list "${text}"`);
    const dash = item.indexOf("-");
    if (dash < 0) {
      const p = parsePort(item);
      if (!p.ok) return p;
      ports.add(p.value);
    } else {
      const lo = parsePort(item.slice(0, dash));
      const hi = parsePort(item.slice(dash + 1));
      if (!lo.ok) return lo;
      if (!hi.ok) return hi;
      if (lo.value > hi.value) return fail("invalid_port", `range "${item}" runs backwards`);
      if (hi.value - lo.value + 1 + ports.size > maxPorts) {
        return fail("invalid_port", `port list "${text}" names more than ${maxPorts} ports`);
      }
      for (let p = lo.value; p <= hi.value; p++) ports.add(p);
    }
    if (ports.size > maxPorts) return fail("invalid_port", `port list "${text}" names more than ${maxPorts} ports`);
  }
  return ok([...ports].sort((a, b) => a - b));
}
