/**
 * A whole rendezvous in one call: the store, the rendezvous identity, the
 * registry (TCP) and the beacon (UDP). `pilot rendezvous` is a thin shell
 * around `startRendezvous`; tests can start one in-process the same way.
 */
import { dirname, join } from "node:path";
import { BeaconServer, type BeaconLimits } from "../beacon/server.ts";
import { loadOrCreateIdentity } from "../crypto/identity.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { pilotPaths } from "../util/paths.ts";
import { RegistryServer, type ServerLimits } from "./server.ts";
import { startHealthServer, type HealthServer } from "./health.ts";
import { isPostgresUrl } from "./postgres-storage.ts";
import { SqliteStorage } from "./sqlite-storage.ts";
import type { RegistryStorage } from "./storage.ts";
import { toBase64 } from "./wire.ts";

export interface RendezvousOptions {
  readonly registry: { host: string; port: number };
  readonly beacon: { host: string; port: number };
  /**
   * A SQLite file (the identity file lives beside it by default), or a
   * postgres://USER:PASS@HOST:PORT/DB URL: several registries may share one
   * database (docs/DEPLOYMENT.md); they must share one identity too.
   */
  readonly storePath: string;
  /** The rendezvous identity; default: identity.json beside a SQLite store, or in $PILOT_HOME/rendezvous. */
  readonly identityPath?: string;
  readonly limits?: Partial<ServerLimits>;
  /** Serve GET /healthz here (health.ts); absent: no health endpoint. */
  readonly health?: { host: string; port: number };
  /** Relay and punching limits of the beacon (relay bandwidth per node, registration lifetime, ...). */
  readonly beaconLimits?: Partial<BeaconLimits>;
  readonly log?: Logger;
}

export interface Rendezvous {
  readonly registry: { host: string; port: number };
  readonly beacon: { host: string; port: number };
  readonly publicKey: string;
  /** The store's path, or its URL without the password. */
  readonly storePath: string;
  readonly identityPath: string;
  /** Where /healthz is served, when asked for. */
  readonly health?: { host: string; port: number };
  close(): Promise<void>;
}

export function identityPathFor(storePath: string): string {
  return join(dirname(storePath), "identity.json");
}

/** Opens the store `location` names: a postgres:// URL, else a SQLite file. */
export async function openStorage(location: string): Promise<RegistryStorage> {
  if (isPostgresUrl(location)) {
    const { PostgresStorage } = await import("./postgres-storage.ts");
    return PostgresStorage.open(location);
  }
  return SqliteStorage.open(location);
}

export async function startRendezvous(options: RendezvousOptions): Promise<Rendezvous> {
  const log = options.log ?? createLogger("rendezvous", { sink: () => {} });
  const identityPath = options.identityPath ?? (isPostgresUrl(options.storePath) ? join(pilotPaths().rendezvousDir, "identity.json") : identityPathFor(options.storePath));
  const { identity, created } = loadOrCreateIdentity(identityPath);
  if (created) log.info("created rendezvous identity", { path: identityPath });
  const store = await openStorage(options.storePath);
  let registry: RegistryServer | undefined;
  let beacon: BeaconServer | undefined;
  let health: HealthServer | undefined;
  try {
    registry = await RegistryServer.start({ ...options.registry, store, signer: identity, limits: options.limits, log: log.child("registry") });
    beacon = await BeaconServer.start({
      ...options.beacon,
      signer: identity,
      directory: registry.directory,
      limits: options.beaconLimits,
      log: log.child("beacon"),
    });
    if (options.health) health = await startHealthServer({ ...options.health, store });
  } catch (e) {
    beacon?.close();
    await registry?.close();
    await store.close();
    throw e;
  }
  const counts = await store.counts();
  log.info("store opened", { kind: store.kind, path: store.location, schema_version: await store.schemaVersion(), nodes: counts.nodes, trust_pairs: counts.trust, pending_requests: counts.requests });
  let closing: Promise<void> | undefined;
  return {
    registry: registry.address,
    beacon: beacon.address,
    publicKey: toBase64(identity.publicKey),
    storePath: store.location,
    identityPath,
    health: health?.address,
    close() {
      closing ??= (async () => {
        await health?.close();
        beacon!.close();
        await registry!.close();
        await store.close();
      })();
      return closing;
    },
  };
}
