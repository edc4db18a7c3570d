/**
 * Two (or more) fake nodes, each served by a real IPC server on a real unix
 * socket in a fresh temp dir, with drivers connected to them.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Driver } from "../../src/driver/index.ts";
import { startIpcServer, type IpcServer } from "../../src/ipc/server.ts";
import { createLogger, type Logger } from "../../src/util/log.ts";
import { FakeNetwork, type FakeLocalNode } from "../support/fake-local-node.ts";

export interface Site {
  node: FakeLocalNode;
  server: IpcServer;
  socketPath: string;
  drivers: Driver[];
  /** Connects one more driver to this site's daemon. */
  connect(): Promise<Driver>;
}

export interface Harness {
  dir: string;
  network: FakeNetwork;
  logs: string[];
  logger: Logger;
  a: Site;
  b: Site;
  site(node: number, hostname?: string): Promise<Site>;
  close(): Promise<void>;
}

export async function startHarness(options: { pipeCapacity?: number } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "pilot-ipc-"));
  const network = new FakeNetwork(options.pipeCapacity);
  const logs: string[] = [];
  const logger = createLogger("ipc", { level: "debug", sink: (line) => logs.push(line) });
  const sites: Site[] = [];
  const site = async (nodeId: number, hostname?: string): Promise<Site> => {
    const node = network.addNode(nodeId, { hostname });
    const socketPath = join(dir, `${nodeId}.sock`);
    const server = await startIpcServer({ node, socketPath, logger });
    const s: Site = {
      node,
      server,
      socketPath,
      drivers: [],
      async connect() {
        const d = await connect({ socketPath });
        s.drivers.push(d);
        return d;
      },
    };
    sites.push(s);
    return s;
  };
  const a = await site(10, "alpha");
  const b = await site(11, "beta");
  return {
    dir,
    network,
    logs,
    logger,
    a,
    b,
    site,
    async close() {
      for (const s of sites) {
        for (const d of s.drivers) await d.close();
        await s.server.close();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves when `predicate` holds, polling; rejects after `ms`. */
export async function until(predicate: () => boolean, ms = 2000, what = "condition"): Promise<void> {
  const deadline = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

/** Collects a readable into one Buffer. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}

/** Deterministic bytes for integrity checks. */
export function pattern(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
