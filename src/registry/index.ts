/**
 * The registry's public surface, for the daemon and the CLI:
 *
 *   RegistryClient.connect(options) -> client       (client.ts: pinning, signed requests, events)
 *   RegistryError { code }                           every failure, with the registry's code
 *   startRendezvous(options) -> { registry, beacon, publicKey, close() }
 *   createDiscover / verifyDiscoverReply / discoverEndpoint   (the beacon, from the daemon's socket)
 *
 * Wire format and security model: docs/REGISTRY.md.
 */
export {
  RegistryClient,
  RegistryError,
  type ClientErrorCode,
  type InboundRequest,
  type InboxPage,
  type NodeInfo,
  type OutboundRequest,
  type ReceiptAck,
  type ReputationInfo,
  type RegisterResult,
  type RegistryClientOptions,
  type RegistryEvent,
  type ResolveResult,
  type SearchHit,
  type TrustedPeer,
  type TrustState,
} from "./client.ts";
export { startRendezvous, type Rendezvous, type RendezvousOptions } from "./rendezvous.ts";
export type { Signer } from "./signer.ts";
export { PROTOCOL_VERSION, RegistryErrorCode, type ServerErrorCode } from "./wire.ts";
export { ONLINE_WINDOW_MS } from "./service.ts";
export { REPUTATION } from "./reputation.ts";
export { HOSTNAME_MAX, MAX_TAGS, REASON_MAX, checkHostname, checkTag, checkTags } from "./rules.ts";
export { createDiscover, discoverEndpoint, verifyDiscoverReply, type DiscoverOptions, type ObservedEndpoint } from "../beacon/discover.ts";
