/**
 * A whole rendezvous in one call: the store, the rendezvous identity, the
 * registry (TCP) and the beacon (UDP). `pilot rendezvous` is a thin shell
 * around `startRendezvous`; tests can start one in-process the same way.
 */
import { dirname, join } from "node:path";
import { BeaconServer, type BeaconLimits } from "../beacon/server.ts";
import { WsRelayServer } from "../beacon/ws-relay.ts";
import { loadOrCreateIdentity } from "../crypto/identity.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { pilotPaths } from "../util/paths.ts";
import { RegistryServer, type ServerLimits } from "./server.ts";
import { startHealthServer, type HealthServer } from "./health.ts";
import { isPostgresUrl } from "./postgres-storage.ts";
import { SqliteStorage } from "./sqlite-storage.ts";
import type { RegistryStorage } from "./storage.ts";
import { toBase64 } from "./wire.ts";
import type { MetricsListener } from "../util/metrics-listener.ts";

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
  /** The other beacons of this deployment (same identity): punching and relay across them (src/beacon/mesh.ts). */
  readonly beaconPeers?: readonly { host: string; port: number }[];
  /** The beacon's relay over WebSocket on one TCP port (ws-relay.ts); TLS with the operator's PEM certificate and key. */
  readonly wsRelay?: { host: string; port: number; tls?: { cert: string; key: string } };
  readonly log?: Logger;
  /** Serve Prometheus metrics over HTTP at this address (`--metrics`, src/registry/metrics.ts). */
  readonly metrics?: { host: string; port: number };
}

export interface Rendezvous {
  readonly registry: { host: string; port: number };
  readonly beacon: { host: string; port: number };
  /** The WebSocket relay, when one was asked for: its address and the URL daemons are given. */
  readonly wsRelay: { host: string; port: number; url: string } | null;
  readonly publicKey: string;
  /** Aggregate counts for the operator page (src/registry/dashboard/): never a node, a name, a tag or a trust pair. */
  stats(): Promise<RendezvousStats>;
  /** The store's path, or its URL without the password. */
  readonly storePath: string;
  readonly identityPath: string;
  /** http://HOST:PORT/metrics when metrics are served (the port actually bound), else null. */
  readonly metricsUrl: string | null;
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
  let metrics: MetricsListener | undefined;
  // prom-client is loaded only when metrics are asked for.
  const observer = options.metrics ? new (await import("./metrics.ts")).RendezvousMetrics() : undefined;
  let wsRelay: WsRelayServer | undefined;
  let health: HealthServer | undefined;
  try {
    registry = await RegistryServer.start({ ...options.registry, store, signer: identity, limits: options.limits, log: log.child("registry"), observer });
    beacon = await BeaconServer.start({
      ...options.beacon,
      signer: identity,
      directory: registry.directory,
      limits: options.beaconLimits,
      log: log.child("beacon"),
      ...(options.beaconPeers ? { peers: options.beaconPeers } : {}),
    });
    if (observer && options.metrics) {
      observer.attach({ registry, store, beacon });
      metrics = observer.serve(options.metrics, log.child("metrics"));
    }
    if (options.wsRelay) wsRelay = WsRelayServer.start({ ...options.wsRelay, beacon, registry, log: log.child("ws-relay") });
    if (options.health) health = await startHealthServer({ ...options.health, store });
  } catch (e) {
    metrics?.close();
    beacon?.close();
    await registry?.close();
    await store.close();
    throw e;
  }
  const counts = await store.counts();
  log.info("store opened", { kind: store.kind, path: store.location, schema_version: await store.schemaVersion(), nodes: counts.nodes, trust_pairs: counts.trust, pending_requests: counts.requests });
  let closing: Promise<void> | undefined;
  const startedAt = Date.now();
  return {
    registry: registry.address,
    beacon: beacon.address,
    async stats() {
      const c = await store.counts();
      const b = beacon!.stats;
      return {
        nodes: { online: registry!.connectionStats().authenticatedNodes, active: c.active, total: c.nodes },
        registry: { connections: registry!.connectionCount, requests: registry!.requestCount },
        beacon: { registered: beacon!.registeredCount, registrations: b.registrations, punches: b.punches, relayed_frames: b.relayedFrames, relayed_bytes: b.relayedBytes, relay_refused: b.relayRefused, relay_rate_limited: b.relayRateLimited },
        uptime_secs: Math.floor((Date.now() - startedAt) / 1000),
      };
    },
    wsRelay: wsRelay ? { ...wsRelay.address, url: wsRelay.url } : null,
    publicKey: toBase64(identity.publicKey),
    storePath: store.location,
    identityPath,
    metricsUrl: metrics?.url ?? null,
    health: health?.address,
    close() {
      closing ??= (async () => {
        metrics?.close();
        wsRelay?.close();
        await health?.close();
        beacon!.close();
        await registry!.close();
        await store.close();
      })();
      return closing;
    },
  };
}

export interface RendezvousStats {
  /** Nodes with a registry connection now, registered (not deregistered), and ever stored. */
  readonly nodes: { readonly online: number; readonly active: number; readonly total: number };
  readonly registry: { readonly connections: number; readonly requests: number };
  readonly beacon: { readonly registered: number; readonly registrations: number; readonly punches: number; readonly relayed_frames: number; readonly relayed_bytes: number; readonly relay_refused: number; readonly relay_rate_limited: number };
  readonly uptime_secs: number;
}
