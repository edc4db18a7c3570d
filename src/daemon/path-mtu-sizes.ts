/**
 * Which data frame sizes path MTU discovery searches on a direct endpoint:
 * the UDP payloads of the common link MTUs (Ethernet 1500, jumbo 9000, cloud
 * VPCs 9001, loopback 65536), less the IP and UDP headers of the endpoint's
 * family, capped at the largest frame we send (MAX_DATA_FRAME).
 *
 *   pathMtuCandidates("10.0.0.2:4000")   [1472, 8972, 8973, MAX_DATA_FRAME]
 *   pathMtuCandidates("[fd00::2]:4000")  [1452, 8952, 8953, MAX_DATA_FRAME]
 *   pathMtuEnabled(env)                  false when PILOT_PMTU=0 (base size only)
 */
import { BASE_DATA_FRAME, MAX_DATA_FRAME } from "../protocol/tunnel-frame.ts";

/** Link MTUs worth a probe, ascending. */
export const LINK_MTUS: readonly number[] = [1500, 9000, 9001, 65536];
const IPV4_UDP_HEADERS = 20 + 8;
const IPV6_UDP_HEADERS = 40 + 8;

export function pathMtuCandidates(endpoint: string): readonly number[] {
  const headers = endpoint.charCodeAt(0) === 91 /* "[" */ ? IPV6_UDP_HEADERS : IPV4_UDP_HEADERS;
  const out: number[] = [];
  for (const mtu of LINK_MTUS) {
    const size = Math.min(mtu - headers, MAX_DATA_FRAME);
    if (size > BASE_DATA_FRAME && (out.length === 0 || size > out[out.length - 1]!)) out.push(size);
  }
  return out;
}

/** PILOT_PMTU=0 (or "off", "false") turns path MTU discovery off. */
export function pathMtuEnabled(env: Record<string, string | undefined> = process.env): boolean {
  const v = (env.PILOT_PMTU ?? "").trim().toLowerCase();
  return !(v === "0" || v === "off" || v === "false" || v === "no");
}
