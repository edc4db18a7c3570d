/**
 * The app's byte pipe to the daemon's IPC socket: the one piece of the SDK
 * that differs between runtimes. Everything above it (frames, streams,
 * credit) is plain TypeScript; this opens the unix socket and adapts its
 * writes and events to what `IpcClient` and `FrameWriter` expect.
 *
 * Two implementations: `node:net` (Node.js, and Bun through its node:net)
 * and `Bun.connect` (Bun only). The default is `Bun.connect` on Bun and
 * `node:net` elsewhere; scripts/bench/ipc-client.ts compares the two on Bun.
 */
import type { ByteSink } from "./writer.ts";
import { connectNodeNet } from "./connection-node.ts";
import { connectBunSocket } from "./connection-bun.ts";

/** What the connection reports; attached once the caller has built its side. */
export interface IpcConnectionHandler {
  /** Bytes from the daemon, in order. */
  data(chunk: Uint8Array): void;
  /** The socket takes writes again after one took less than offered. */
  drain(): void;
  /** The connection ended (closed by the daemon, an error, or `end()`); reported once. */
  closed(): void;
}

/** An open connection. `write` has the `ByteSink` contract: bytes taken now (possibly fewer), or -1 once closed. */
export interface IpcConnection extends ByteSink {
  /** Receives events from now on; bytes arriving before it is set are dropped (the daemon speaks only when asked). */
  handler: IpcConnectionHandler | null;
  /** Graceful close after pending writes. */
  end(): void;
  /** Keeps the process alive while the connection is open. */
  ref(): void;
  /** Lets the process exit even though the connection is open. */
  unref(): void;
}

export type IpcTransport = "node" | "bun";

/** `bun` where the Bun global exists, `node` otherwise. */
export function defaultIpcTransport(): IpcTransport {
  return typeof (globalThis as { Bun?: unknown }).Bun === "object" ? "bun" : "node";
}

/**
 * Connects to the unix socket at `socketPath`. Rejects with the runtime's
 * errno-style error (`code` ENOENT, ECONNREFUSED, EACCES, ...) if nobody
 * listens there.
 */
export function openIpcConnection(socketPath: string, transport: IpcTransport = defaultIpcTransport()): Promise<IpcConnection> {
  return transport === "bun" ? connectBunSocket(socketPath) : connectNodeNet(socketPath);
}
