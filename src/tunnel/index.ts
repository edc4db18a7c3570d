/**
 * The tunnel layer: per-peer sessions over one UDP socket, sans I/O.
 * `Peer` is the state machine for one remote node; `IndexTable` maps session
 * indices to peers; `timers.ts` holds the WireGuard-style clocks and limits.
 */
export * from "./peer.ts";
export * from "./index-table.ts";
export * from "./timers.ts";
export * from "./router.ts";
export * from "./handshake-guard.ts";
export * from "./rate-limit.ts";
