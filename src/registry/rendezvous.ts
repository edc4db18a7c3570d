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
import { RegistryServer, type ServerLimits } from "./server.ts";
import { RegistryStore } from "./store.ts";
import { toBase64 } from "./wire.ts";

export interface RendezvousOptions {
  readonly registry: { host: string; port: number };
  readonly beacon: { host: string; port: number };
  /** SQLite file; the identity file lives beside it. */
  readonly storePath: string;
  readonly limits?: Partial<ServerLimits>;
  /** Relay and punching limits of the beacon (relay bandwidth per node, registration lifetime, ...). */
  readonly beaconLimits?: Partial<BeaconLimits>;
  /** The beacon's relay over WebSocket on one TCP port (ws-relay.ts); TLS with the operator's PEM certificate and key. */
  readonly wsRelay?: { host: string; port: number; tls?: { cert: string; key: string } };
  readonly log?: Logger;
}

export interface Rendezvous {
  readonly registry: { host: string; port: number };
  readonly beacon: { host: string; port: number };
  /** The WebSocket relay, when one was asked for: its address and the URL daemons are given. */
  readonly wsRelay: { host: string; port: number; url: string } | null;
  readonly publicKey: string;
  readonly storePath: string;
  readonly identityPath: string;
  close(): Promise<void>;
}

export function identityPathFor(storePath: string): string {
  return join(dirname(storePath), "identity.json");
}

export async function startRendezvous(options: RendezvousOptions): Promise<Rendezvous> {
  const log = options.log ?? createLogger("rendezvous", { sink: () => {} });
  const identityPath = identityPathFor(options.storePath);
  const { identity, created } = loadOrCreateIdentity(identityPath);
  if (created) log.info("created rendezvous identity", { path: identityPath });
  const store = RegistryStore.open(options.storePath);
  let registry: RegistryServer | undefined;
  let beacon: BeaconServer | undefined;
  let wsRelay: WsRelayServer | undefined;
  try {
    registry = await RegistryServer.start({ ...options.registry, store, signer: identity, limits: options.limits, log: log.child("registry") });
    beacon = await BeaconServer.start({
      ...options.beacon,
      signer: identity,
      directory: registry.directory,
      limits: options.beaconLimits,
      log: log.child("beacon"),
    });
    if (options.wsRelay) wsRelay = WsRelayServer.start({ ...options.wsRelay, beacon, registry, log: log.child("ws-relay") });
  } catch (e) {
    beacon?.close();
    await registry?.close();
    store.close();
    throw e;
  }
  const counts = store.counts();
  log.info("store opened", { path: options.storePath, schema_version: store.schemaVersion(), nodes: counts.nodes, trust_pairs: counts.trust, pending_requests: counts.requests });
  let closing: Promise<void> | undefined;
  return {
    registry: registry.address,
    beacon: beacon.address,
    wsRelay: wsRelay ? { ...wsRelay.address, url: wsRelay.url } : null,
    publicKey: toBase64(identity.publicKey),
    storePath: options.storePath,
    identityPath,
    close() {
      closing ??= (async () => {
        wsRelay?.close();
        beacon!.close();
        await registry!.close();
        store.close();
      })();
      return closing;
    },
  };
}
