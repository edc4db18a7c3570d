/**
 * A peer's online state as the registry knows it, asked with the daemon's
 * `lookup` call. Used by `pilot status`, the MCP server's peer list and the
 * dashboard: each asks for a bounded number of peers, a few at a time, and
 * a registry that does not answer in time gives "unknown" (null), never a hang.
 */

/** `online` and `last_seen` (as the registry gave it) of one address; null where unknown. */
export interface Presence {
  readonly online: boolean | null;
  readonly lastSeen: unknown;
}

/** Most addresses anyone asks about at once: the registry rate-limits lookups per node. */
export const PRESENCE_LOOKUPS_MAX = 20;
const CONCURRENCY = 4;
const TIMEOUT_MS = 3000;

type Call = (method: string, params: Record<string, unknown>) => Promise<unknown>;

/** The registry's online state of `addresses` (at most PRESENCE_LOOKUPS_MAX), a few at a time. */
export async function lookupPresence(call: Call, addresses: readonly string[]): Promise<Map<string, Presence>> {
  const asked = addresses.slice(0, PRESENCE_LOOKUPS_MAX);
  const result = new Map<string, Presence>();
  let next = 0;
  const worker = async () => {
    while (next < asked.length) {
      const address = asked[next++]!;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const r = (await Promise.race([
          call("lookup", { target: address }),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timeout")), TIMEOUT_MS))),
        ])) as Record<string, unknown> | null;
        result.set(address, { online: typeof r?.online === "boolean" ? r.online : null, lastSeen: r?.last_seen ?? null });
      } catch {
        result.set(address, { online: null, lastSeen: null });
      } finally {
        clearTimeout(timer);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, asked.length) }, worker));
  return result;
}
