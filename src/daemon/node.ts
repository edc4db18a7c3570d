/**
 * The daemon's core: the LocalNode that the IPC server serves. It joins the
 * data plane (tunnel, streams, datagrams) to the registry session (identity,
 * names, tags, visibility, trust) and answers every control operation by name
 * (`call`). It owns no sockets itself: `run.ts` creates them and starts it.
 */
import { BASE_DATA_FRAME } from "../protocol/tunnel-frame.ts";
import type { Identity } from "../crypto/identity.ts";
import { formatAddress, networkOf, nodeOf, parseAddress, addressOf, type Address } from "../protocol/address.ts";
import { WellKnownPort } from "../protocol/ports.ts";
import { RegistryError, type RegistryClient, type RegistryEvent, type TrustState } from "../registry/client.ts";
import type { Logger } from "../util/log.ts";
import { DataPlane, type PeerInfo } from "./data-plane.ts";
import type { BeaconClient } from "../beacon/client.ts";
import type { RendezvousLinks } from "./ws-relay-path.ts";
import type { PathTimers } from "./paths.ts";
import { NodeError, type DatagramMessage, type LocalNode, type NodeErrorCode, type PortBinding, type StreamHandle } from "./local-node.ts";
import { TrustStore, type TrustSnapshot } from "./trust-store.ts";
import { echoStream } from "./echo.ts";
import { ExposeManager } from "./expose.ts";
import { EventBus } from "./event-bus.ts";
import { PeerPresence } from "./peer-presence.ts";
import { SERVICE_FACTORIES } from "./services/index.ts";
import { DEFAULT_SERVICE_SETTINGS, SERVICE_NAMES, type DaemonService, type ServiceSettings } from "./services/service.ts";
import type { TaskReceipt } from "../protocol/receipt.ts";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { signTranscriptHash, TRANSCRIPT_HASH_SIZE } from "../crypto/secure-channel.ts";
import { fromBase64, toBase64 } from "../registry/wire.ts";
import { PILOT_VERSION } from "../shared/version.ts";

export interface DaemonNodeOptions {
  readonly identity: Identity;
  readonly address: Address;
  readonly hostname: string | null;
  readonly public: boolean;
  readonly tags: string[];
  readonly registry: RegistryClient;
  readonly registryAddress: string;
  readonly trust: TrustStore;
  readonly log: Logger;
  /** The tunnel endpoint we registered, e.g. "127.0.0.1:4000". */
  readonly endpoint: string;
  readonly send: (frame: Uint8Array, host: string, port: number, dontFragment?: boolean) => void;
  readonly flush: () => void;
  /** Path MTU discovery on direct paths (default on; PILOT_PMTU=0 turns it off). */
  readonly pathMtu?: boolean;
  readonly onBeacon?: (datagram: Uint8Array, host: string, port: number) => void;
  /** The beacon client: endpoint discovery, hole punching and relay (none: direct paths only). */
  readonly rendezvous?: BeaconClient | RendezvousLinks | null;
  /** Is "ip:port" one of this node's own addresses? */
  readonly isLocalEndpoint?: (endpoint: string) => boolean;
  readonly pathTimers?: Partial<PathTimers>;
  readonly streamConfig?: ConstructorParameters<typeof DataPlane>[0]["streamConfig"];
  readonly bufferLimits?: ConstructorParameters<typeof DataPlane>[0]["bufferLimits"];
  readonly echo?: boolean;
  /** Where exposed ports are kept (`$PILOT_HOME/expose.json`); none: in memory only. */
  readonly exposeFile?: string | null;
  /** PILOT_HOME: services keep their storage in directories under it; none: in memory only. */
  readonly stateDir?: string | null;
  /** Which agent services run, and which admit strangers. */
  readonly services?: ServiceSettings;
}

type Params = Record<string, unknown>;

export class DaemonNode implements LocalNode {
  readonly address: Address;
  readonly plane: DataPlane;
  private hostnameValue: string | null;
  private isPublic: boolean;
  private tags: string[];
  private readonly startedAt = Date.now();
  private readonly log: Logger;
  private readonly registry: RegistryClient;
  private readonly trust: TrustStore;
  private observedEndpoint: string | null = null;
  /** hostname -> address, so repeated dials by name do not each ask the registry. */
  private readonly names = new Map<string, { address: Address; expires: number }>();
  private syncing: Promise<void> | null = null;
  private resyncWanted = false;
  /** Pending requests to this node in all, as the registry last said (the mirror holds a window of them). */
  private inboundTotal = 0;
  /** node id -> its polo score as last fetched (reputationOf). */
  private readonly scores = new Map<number, { score: number | null; expires: number }>();
  private readonly methods: Record<string, (p: Params) => Promise<unknown> | unknown>;
  /** Exposed ports (`pilot expose`): Pilot streams bridged to local TCP services. */
  readonly exposes: ExposeManager;
  /** The local event feed (trust requests, messages, files, events, peers). */
  readonly events = new EventBus();
  /** Agent services (messages, files, pub/sub), each a module of its own. */
  readonly services: DaemonService[] = [];
  /** Trusted peers online, published as peer.online / peer.offline. */
  private readonly presence: PeerPresence;

  constructor(private readonly options: DaemonNodeOptions) {
    this.address = options.address;
    this.hostnameValue = options.hostname;
    this.isPublic = options.public;
    this.tags = options.tags;
    this.log = options.log;
    this.registry = options.registry;
    this.trust = options.trust;
    this.presence = new PeerPresence({
      trusts: (node) => this.isTrustedAddress(node),
      describe: (node) => ({ hostname: this.trust.trustedNode(nodeOf(node))?.hostname ?? null, ...this.pathOf(node) }),
      publish: (type, data) => this.events.publish(type, data),
    });
    this.plane = new DataPlane({
      address: options.address,
      identity: options.identity,
      send: options.send,
      flush: options.flush,
      onBeacon: options.onBeacon,
      rendezvous: options.rendezvous,
      isLocalEndpoint: options.isLocalEndpoint,
      pathTimers: options.pathTimers,
      log: options.log.child("data"),
      streamConfig: options.streamConfig,
      bufferLimits: options.bufferLimits,
      pathMtu: options.pathMtu ?? true,
      policy: {
        admitsSession: (node) => this.isPublic || this.isTrustedAddress(node),
        acceptsInbound: (node) => this.isPublic || this.isTrustedAddress(node),
        trusts: (node) => this.isTrustedAddress(node),
      },
      lookupPeer: (node, outbound) => this.lookupPeer(node, outbound),
      // Asked when a dial's SYN goes unanswered (dial-watch.ts): is its daemon still running?
      peerPresence: (node) => this.registry.resolve(nodeOf(node)).then((r) => ({ online: r.online, lastSeen: Number.isFinite(r.last_seen) ? r.last_seen : null })),
      onPeerEvent: (node, event) => this.presence.onTunnelEvent(node, event),
    });
    let persistFailing = false;
    this.trust.onPersistError = (e) => {
      if (!persistFailing) this.log.warn("cannot write the trust file; trust changes hold in memory and the write is retried", { error: e.message });
      persistFailing = true;
    };
    this.trust.onPersistRecovered = () => {
      persistFailing = false;
      this.log.info("trust file written again");
    };
    this.registry.onEvent = (event) => this.onRegistryEvent(event);
    this.registry.onReconnect = () => {
      this.log.info("registry connection restored; resynchronising trust");
      void this.syncTrust();
    };
    if (options.echo !== false) this.plane.listen(WellKnownPort.Echo, echoStream);
    this.exposes = new ExposeManager({ host: this.plane, file: options.exposeFile ?? null, log: options.log.child("expose") });
    this.methods = {
      info: () => this.info(),
      resolve: (p) => this.resolveMethod(p),
      find: (p) => this.find(p),
      lookup: (p) => this.lookup(p),
      set_hostname: (p) => this.setHostname(p),
      set_tags: (p) => this.setTags(p),
      set_visibility: (p) => this.setVisibility(p),
      peers: (p) => this.peers(p),
      connections: () => this.connections(),
      disconnect: (p) => this.disconnect(p),
      ping: (p) => this.ping(p),
      handshake: (p) => this.handshake(p),
      approve: (p) => this.approve(p),
      reject: (p) => this.reject(p),
      untrust: (p) => this.untrust(p),
      pending: async (p) => (p.offset !== undefined || p.limit !== undefined ? this.pendingPage(p) : (await this.freshTrust(), this.pending())),
      trusted: async () => (await this.freshTrust(), this.trusted()),
      ...this.exposes.methods(),
      secure_sign: (p) => this.secureSign(p),
      peer_key: (p) => this.peerKey(p),
      reputation: (p) => this.reputation(p),
    };
    this.buildServices(options.services ?? DEFAULT_SERVICE_SETTINGS);
  }

  private buildServices(settings: ServiceSettings): void {
    for (const name of SERVICE_NAMES) {
      const factory = SERVICE_FACTORIES[name];
      if (!factory || settings.disabled.has(name)) continue;
      const home = this.options.stateDir ?? null;
      const service = factory({
        address: this.address,
        log: this.log.child(name),
        events: this.events,
        dir: home ? join(home, name) : null,
        config: settings.config ?? {},
        listen: (port, onAccept) => this.plane.listen(port, onAccept),
        dial: (target, port, o) => this.plane.dial(target, port, o?.timeoutMs),
        resolveTarget: (text) => this.resolveTarget(text),
        admits: (node) => this.isTrustedAddress(node) || settings.open.has(name),
        trusts: (node) => this.isTrustedAddress(node),
        signTaskStatement: (statement) => this.signTaskStatement(statement),
        peerKey: (node) => this.identityKeyOf(node),
        submitReceipt: (receipt) => this.submitReceipt(receipt),
        reputationOf: (node) => this.reputationOf(node),
      });
      this.services.push(service);
      Object.assign(this.methods, service.methods());
    }
  }

  /** Starts every agent service (after registration): each binds its ports and opens its storage. */
  async startServices(): Promise<void> {
    for (const s of this.services) {
      if (this.options.stateDir) mkdirSync(join(this.options.stateDir, s.name), { recursive: true, mode: 0o700 });
      await s.start();
    }
  }

  get hostname(): string | undefined {
    return this.hostnameValue ?? undefined;
  }

  // ---- LocalNode: the data path --------------------------------------------

  listen(port: number, onAccept: (stream: StreamHandle) => void): PortBinding {
    return this.plane.listen(port, onAccept);
  }

  dial(target: Address, port: number, options?: { timeoutMs?: number }): Promise<StreamHandle> {
    return this.plane.dial(target, port, options?.timeoutMs);
  }

  bindDatagrams(port: number, onDatagram: (message: DatagramMessage) => void): PortBinding {
    return this.plane.bindDatagrams(port, onDatagram);
  }

  sendDatagram(srcPort: number, target: Address, dstPort: number, data: Uint8Array): Promise<void> {
    return this.plane.sendDatagram(srcPort, target, dstPort, data);
  }

  async call(method: string, params: Params): Promise<unknown> {
    const fn = this.methods[method];
    if (!fn) throw new NodeError("invalid_argument", `unknown method "${method}"`);
    try {
      return await fn(params ?? {});
    } catch (e) {
      throw asNodeError(e);
    }
  }

  // ---- trust ---------------------------------------------------------------

  private isTrustedAddress(node: Address): boolean {
    return networkOf(node) === 0 && this.trust.isTrusted(nodeOf(node));
  }

  /** Pulls the authoritative trust state from the registry and applies it (dropping peers no longer trusted). */
  syncTrust(): Promise<void> {
    if (this.syncing) {
      this.resyncWanted = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.resyncWanted = false;
          await this.retryRevocations();
          const state = await this.registry.trustState();
          const lost = this.trust.replace(snapshotOf(state));
          this.inboundTotal = state.inbound_total;
          for (const id of lost) this.cutPeer(id, "trust ended");
        } while (this.resyncWanted);
      } catch (e) {
        this.log.warn("trust sync with the registry failed; enforcing the last known trust", { error: (e as Error).message });
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  /** Answers from a fresh mirror when the registry answers within a second, else from the last one. */
  private async freshTrust(): Promise<void> {
    if (!this.registry.connected) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 1000);
    });
    await Promise.race([this.syncTrust(), timeout]);
    clearTimeout(timer);
  }

  private async retryRevocations(): Promise<void> {
    for (const id of this.trust.pendingRevocations()) {
      try {
        await this.registry.trustRevoke(id);
        this.trust.confirmRevoked(id);
      } catch (e) {
        if (e instanceof RegistryError && e.code === "not_found") this.trust.confirmRevoked(id);
        else throw e;
      }
    }
  }

  private onRegistryEvent(event: RegistryEvent): void {
    switch (event.event) {
      case "trust_request":
        this.log.info("trust request received", { from: event.address, reason: event.reason });
        this.events.publish("trust.request", { address: formatAddress(addressOf(0, event.from)), node_id: event.from, reason: event.reason });
        break;
      case "trust_approved":
        this.log.info("trust established", { peer: event.address });
        this.events.publish("trust.approved", { address: formatAddress(addressOf(0, event.peer)), node_id: event.peer });
        break;
      case "trust_rejected":
        this.log.info("trust request rejected", { peer: event.address });
        this.events.publish("trust.rejected", { address: formatAddress(addressOf(0, event.peer)), node_id: event.peer, ...(event.reason ? { reason: event.reason } : {}) });
        break;
      case "trust_revoked":
        this.log.info("trust revoked by the peer", { peer: event.address });
        this.events.publish("trust.revoked", { address: formatAddress(addressOf(0, event.peer)), node_id: event.peer });
        // Cut at once; the sync below makes the mirror match the registry.
        if (this.trust.isTrusted(event.peer)) this.trust.revoke(event.peer);
        this.cutPeer(event.peer, "trust revoked by the peer");
        break;
    }
    void this.syncTrust();
  }

  private cutPeer(nodeId: number, why: string): void {
    const address = addressOf(0, nodeId);
    for (const [name, entry] of this.names) if (entry.address === address) this.names.delete(name);
    const n = this.plane.dropPeer(address, new NodeError("not_trusted", `connection closed: ${why} (${formatAddress(address)})`));
    this.presence.untrusted(address);
    this.log.info("peer cut off", { peer: formatAddress(address), reason: why, connections_reset: n });
  }

  /** The data plane asks for a node's key and endpoint before any tunnel to it exists. */
  private async lookupPeer(node: Address, outbound: boolean): Promise<PeerInfo> {
    if (networkOf(node) !== 0) throw new NodeError("not_found", `no node ${formatAddress(node)}`, "only network 0 exists today");
    const id = nodeOf(node);
    let result;
    try {
      result = await this.registry.resolve(id, { contact: outbound });
    } catch (e) {
      throw asNodeError(e, notFoundHint(formatAddress(node)));
    }
    const key = Buffer.from(result.public_key, "base64");
    const pinned = this.trust.trustedNode(id);
    if (pinned && pinned.publicKey !== result.public_key) {
      throw new NodeError("unauthorized", `the registry now names a different key for ${formatAddress(node)} than the one you trusted`, "untrust and trust the node again if it really changed its identity");
    }
    const endpoint = result.candidates[0] ?? null;
    if (!endpoint) throw new NodeError("unreachable", `${formatAddress(node)} has no reachable endpoint`, "its daemon may be offline");
    // The addresses it reports as its own (not "0.0.0.0:P", which stands for whatever the registry saw).
    const hostEndpoints = result.endpoints.filter((e) => !/^(0\.0\.0\.0|\[::\]):/.test(e));
    return { identityKey: new Uint8Array(key), endpoint, candidates: result.candidates, hostEndpoints };
  }

  // ---- control operations --------------------------------------------------

  private info() {
    const planeStreams = this.plane.streams();
    let sent = 0;
    let received = 0;
    for (const p of this.plane.router.allPeers()) {
      sent += p.stats.bytesSent;
      received += p.stats.bytesReceived;
    }
    return {
      node_id: nodeOf(this.address),
      address: formatAddress(this.address),
      hostname: this.hostnameValue,
      public: this.isPublic,
      tags: this.tags,
      version: PILOT_VERSION,
      pid: process.pid,
      uptime_secs: Math.floor((Date.now() - this.startedAt) / 1000),
      endpoint: this.options.endpoint,
      observed_endpoint: this.options.rendezvous?.observed ?? this.observedEndpoint,
      beacon_registered: (this.options.rendezvous && "udpAvailable" in this.options.rendezvous ? this.options.rendezvous.udpAvailable : this.options.rendezvous?.available) ?? false,
      relay_tcp: this.options.rendezvous && "tcpRelay" in this.options.rendezvous ? this.options.rendezvous.tcpRelay : null,
      registry: this.options.registryAddress,
      registry_connected: this.registry.connected,
      encrypt: true,
      peers: this.plane.router.peerCount,
      connections: planeStreams.filter((s) => !s.isClosedForOwner).length,
      ports: this.plane.ports.listenerPorts(),
      trusted: this.trust.trustedNodes().length,
      pending: this.trust.inboundRequests().length,
      trust_file_error: this.trust.persistError?.message ?? null,
      bytes_sent: sent,
      bytes_recv: received,
      packets: snakeCaseKeys(this.plane.counters),
      tunnel: snakeCaseKeys({ ...this.plane.router.stats, underLoad: this.plane.router.guard.underLoad(performance.now()) }),
      introductions: snakeCaseKeys(this.plane.introductions.stats),
      buffers: this.bufferInfo(),
    };
  }

  /** Stream buffer memory: what the budget allows and what the peers' streams hold now. */
  private bufferInfo() {
    const b = this.plane.buffers.snapshot();
    return {
      budget: b.limits.total,
      per_peer: b.limits.perPeer,
      per_stranger: b.limits.perStranger,
      strangers_total: b.limits.strangersTotal,
      held: b.held,
      held_by_strangers: b.heldByStrangers,
      peers: b.peers,
      largest_peer: b.largestPeer ? { address: formatAddress(b.largestPeer.peer), held: b.largestPeer.held } : null,
      refusals: b.refusals,
    };
  }

  setObservedEndpoint(endpoint: string): void {
    if (endpoint !== this.observedEndpoint) this.log.info("public endpoint discovered", { endpoint });
    this.observedEndpoint = endpoint;
  }

  /** Resolves a target the way every command accepts it: full address, bare node id, or hostname. */
  async resolveTarget(text: string): Promise<Address> {
    const t = text.trim();
    if (t.includes(":")) {
      const a = parseAddress(t);
      if (!a.ok) throw new NodeError("invalid_argument", a.error.message, "addresses look like 0:0000.0000.0007");
      return a.value;
    }
    if (/^[0-9]+$/.test(t)) {
      const id = Number(t);
      if (id > 0xffff_ffff) throw new NodeError("invalid_argument", `node id ${t} is larger than 4294967295`);
      return addressOf(0, id);
    }
    if (this.hostnameValue === t) return this.address;
    // Trusted peers' names are known locally: no registry round trip, and it works while the registry is away.
    const trusted = this.trust.trustedNodes().find((n) => n.hostname === t);
    if (trusted) return addressOf(0, trusted.nodeId);
    const cached = this.names.get(t);
    if (cached && cached.expires > Date.now()) return cached.address;
    try {
      const info = await this.registry.find(t);
      const a = parseAddress(info.address);
      if (!a.ok) throw new NodeError("internal", `the registry returned a bad address for ${t}`);
      if (this.names.size > 1024) this.names.clear();
      this.names.set(t, { address: a.value, expires: Date.now() + NAME_CACHE_MS });
      return a.value;
    } catch (e) {
      this.names.delete(t);
      throw asNodeError(e, notFoundHint(t));
    }
  }

  private async resolveMethod(p: Params) {
    const target = typeof p.hostname === "string" && p.hostname !== "" ? p.hostname : str(p, "target");
    const address = await this.resolveTarget(target);
    return { target, address: formatAddress(address), node_id: nodeOf(address) };
  }

  private async find(p: Params) {
    const hostname = str(p, "hostname");
    return this.registry.find(hostname).catch((e) => {
      throw asNodeError(e, notFoundHint(hostname));
    });
  }

  private async lookup(p: Params) {
    const address = await this.resolveTarget(str(p, "target"));
    return this.registry.lookup(nodeOf(address)).catch((e) => {
      throw asNodeError(e, notFoundHint(formatAddress(address)));
    });
  }

  private async setHostname(p: Params) {
    const hostname = typeof p.hostname === "string" ? p.hostname : "";
    const r = await this.registry.setHostname(hostname);
    this.hostnameValue = r.hostname;
    return { node_id: r.node_id, hostname: r.hostname };
  }

  private async setTags(p: Params) {
    const tags = Array.isArray(p.tags) ? p.tags.map(String) : [];
    const r = await this.registry.setTags(tags);
    this.tags = r.tags;
    return { node_id: r.node_id, tags: r.tags };
  }

  private async setVisibility(p: Params) {
    if (typeof p.public !== "boolean") throw new NodeError("invalid_argument", "public must be true or false");
    const r = await this.registry.setVisibility(p.public);
    this.isPublic = r.public;
    return { node_id: r.node_id, public: r.public, visibility: r.public ? "public" : "private" };
  }

  private async peers(p: Params) {
    if (typeof p.search === "string" && p.search !== "") {
      const hits = await this.registry.search(p.search);
      return { query: p.search, peers: hits, total: hits.length };
    }
    const now = performance.now();
    const all = [...this.plane.router.allPeers()];
    const scores = all.length ? await this.peerScores(all.map((peer) => nodeOf(peer.remoteAddress))) : new Map<number, number>();
    const peers = all.map((peer) => ({
      node_id: nodeOf(peer.remoteAddress),
      address: formatAddress(peer.remoteAddress),
      hostname: this.trust.trustedNode(nodeOf(peer.remoteAddress))?.hostname ?? null,
      ...this.pathOf(peer.remoteAddress, peer.endpoint),
      established: peer.isEstablished(now),
      encrypted: true,
      authenticated: true,
      trusted: this.isTrustedAddress(peer.remoteAddress),
      bytes_sent: peer.stats.bytesSent,
      bytes_recv: peer.stats.bytesReceived,
      handshakes: peer.stats.handshakesCompleted,
      polo_score: scores.get(nodeOf(peer.remoteAddress)) ?? null,
    }));
    return { peers, total: peers.length };
  }

  /** The path to a peer as `peers` and `ping` show it: direct, punched or relay; where frames go; probe RTT. */
  private pathOf(address: Address, fallbackEndpoint: string | null = null) {
    const info = this.plane.paths.describe(address);
    return {
      endpoint: info ? info.endpoint : fallbackEndpoint,
      path: info?.path ?? "direct",
      rtt_ms: info?.rttMs != null ? round(info.rttMs) : null,
      path_changes: info?.changes ?? 0,
      ...this.pathSizeOf(address),
    };
  }

  /** The largest UDP datagram the tunnel path carries now (path MTU discovery), and where the search stands. */
  private pathSizeOf(address: Address) {
    const peer = this.plane.router.peer(address);
    return { datagram_size: peer?.pathFrameSize ?? BASE_DATA_FRAME, pmtu: peer?.pathMtuState ?? "disabled" };
  }

  private connections() {
    const all = this.plane.streams();
    // The newest first, and few enough to fit one IPC answer.
    const shown = all.sort((x, y) => y.id - x.id).slice(0, CONNECTIONS_LISTED);
    const list = shown.map((s) => {
      const st = s.engine.stats();
      return {
        id: s.id,
        local_port: s.localPort,
        remote_addr: formatAddress(s.remoteAddress),
        remote_port: s.remotePort,
        state: st.state,
        origin: s.origin,
        srtt_ms: round(st.srtt),
        rttvar_ms: round(st.rttvar),
        cwnd: st.cwnd,
        in_flight: st.inFlight,
        send_window: st.sendWindow,
        recv_window: st.receiveWindow,
        bytes_sent: st.bytesSent,
        bytes_recv: st.bytesReceived,
        retransmits: st.retransmits,
        fast_retransmits: st.fastRetransmits,
        timeouts: st.timeouts,
      };
    });
    return { connections: list, total: all.length, ...(all.length > list.length ? { truncated: true } : {}) };
  }

  private disconnect(p: Params) {
    const id = num(p, "id");
    const s = this.plane.streams().find((x) => x.id === id);
    if (!s) throw new NodeError("not_found", `no connection ${id}`, "list them with: pilot connections");
    s.abort();
    return { id, closed: true };
  }

  private async ping(p: Params) {
    const address = await this.resolveTarget(str(p, "target"));
    const timeout = typeof p.timeout_ms === "number" ? p.timeout_ms : 3000;
    const seq = typeof p.seq === "number" ? p.seq : 0;
    const size = typeof p.size === "number" ? Math.min(Math.max(0, p.size), 1024) : 0;
    const started = performance.now();
    const rtt = await this.plane.ping(address, seq, timeout, new Uint8Array(size));
    // Our own address is loopback: no tunnel, no path.
    const path = address === this.address ? { path: "self", endpoint: null } : this.pathOf(address);
    return { target: formatAddress(address), seq, rtt_ms: round(rtt), total_ms: round(performance.now() - started), path: path.path, endpoint: path.endpoint };
  }

  private async handshake(p: Params) {
    const address = await this.resolveForTrust(str(p, "target"));
    const reason = typeof p.reason === "string" ? p.reason : "";
    const r = await this.registry.trustRequest(nodeOf(address), reason);
    void this.syncTrust();
    return { node_id: nodeOf(address), address: formatAddress(address), status: r.status };
  }

  private async approve(p: Params) {
    const address = await this.resolveForTrust(str(p, "target"));
    await this.registry.trustApprove(nodeOf(address));
    await this.syncTrust();
    return { node_id: nodeOf(address), address: formatAddress(address), status: "trusted" };
  }

  private async reject(p: Params) {
    const address = await this.resolveForTrust(str(p, "target"));
    const reason = typeof p.reason === "string" && p.reason !== "" ? p.reason : undefined;
    await this.registry.trustReject(nodeOf(address), reason);
    await this.syncTrust();
    return { node_id: nodeOf(address), address: formatAddress(address), status: "rejected" };
  }

  private async untrust(p: Params) {
    const address = await this.resolveForTrust(str(p, "target"));
    const id = nodeOf(address);
    const wasTrusted = this.trust.isTrusted(id);
    // Effective at once, here: the override holds until the registry confirms.
    this.trust.revoke(id);
    this.cutPeer(id, "trust revoked");
    let confirmed = true;
    try {
      const r = await this.registry.trustRevoke(id);
      this.trust.confirmRevoked(id);
      if (!wasTrusted && !r.revoked && !r.withdrawn) {
        throw new NodeError("not_found", `${formatAddress(address)} was not trusted`, "see who is with: pilot trust");
      }
    } catch (e) {
      if (e instanceof NodeError) throw e;
      if (e instanceof RegistryError && e.code === "not_found") {
        this.trust.confirmRevoked(id);
        // Neither side knew of trust or a request: nothing was revoked.
        if (!wasTrusted) throw new NodeError("not_found", `${formatAddress(address)} was not trusted`, "list the nodes you trust with: pilot trust");
      } else confirmed = false;
    }
    return { node_id: id, address: formatAddress(address), status: "revoked", registry_confirmed: confirmed };
  }

  /** Trust commands name nodes we may not be able to see yet (private, pending): ids and addresses need no lookup. */
  private async resolveForTrust(target: string): Promise<Address> {
    const t = target.trim();
    const inbound = this.trust.inboundRequests().find((r) => r.hostname === t);
    if (inbound) return addressOf(0, inbound.nodeId);
    return this.resolveTarget(t);
  }

  private pending() {
    const pending = this.trust.inboundRequests().map((r) => ({
      node_id: r.nodeId,
      address: formatAddress(addressOf(0, r.nodeId)),
      hostname: r.hostname,
      reason: r.reason,
      received_at: r.createdAt,
    }));
    const outgoing = this.trust.outboundRequests().map((r) => ({
      node_id: r.nodeId,
      address: formatAddress(addressOf(0, r.nodeId)),
      reason: r.reason,
      sent_at: r.createdAt,
    }));
    return { pending, outgoing, total: Math.max(this.inboundTotal, pending.length) };
  }

  /** One page of every pending request to this node, newest first, from the registry (`offset`, `limit` 1-100). */
  private async pendingPage(p: Params) {
    const offset = p.offset === undefined ? 0 : num(p, "offset");
    const limit = p.limit === undefined ? 100 : num(p, "limit");
    if (offset < 0 || limit < 1 || limit > 100) throw new NodeError("invalid_argument", `"offset" must be 0 or more and "limit" 1-100`);
    const page = await this.registry.trustInbox({ offset, limit }).catch((e) => {
      throw asNodeError(e);
    });
    const pending = page.inbound.map((r) => ({ node_id: r.from, address: r.address, hostname: r.hostname, reason: r.reason, received_at: r.created_at }));
    const outgoing = this.trust.outboundRequests().map((r) => ({ node_id: r.nodeId, address: formatAddress(addressOf(0, r.nodeId)), reason: r.reason, sent_at: r.createdAt }));
    return { pending, outgoing, total: page.total, offset: page.offset, next_offset: page.next_offset };
  }

  private trusted() {
    const trusted = this.trust.trustedNodes().map((t) => ({
      node_id: t.nodeId,
      address: formatAddress(addressOf(0, t.nodeId)),
      hostname: t.hostname,
      since: t.since,
      connected: this.plane.router.peer(addressOf(0, t.nodeId))?.isEstablished(performance.now()) ?? false,
    }));
    return { trusted, total: trusted.length };
  }

  // ---- secure channel (src/crypto/secure-channel.ts) ----------------------

  /** Signs SECURE_SIGN_CONTEXT ‖ a 32-byte transcript hash with the node identity: never anything else. */
  private secureSign(p: Params) {
    const hash = fromBase64(p.hash, TRANSCRIPT_HASH_SIZE);
    if (!hash) throw new NodeError("invalid_argument", `"hash" must be a base64-encoded ${TRANSCRIPT_HASH_SIZE}-byte transcript hash`);
    return { signature: toBase64(signTranscriptHash(this.options.identity, hash)), public_key: toBase64(this.options.identity.publicKey), address: formatAddress(this.address) };
  }

  /**
   * The Ed25519 identity key this daemon pins for a node: the key its tunnel
   * is authenticated with (so a stream from that address was carried under
   * it), else the registry's answer, checked against the key trusted for it.
   */
  /** Signs only task statements (src/protocol/receipt.ts), recognised by their domain prefix. */
  private signTaskStatement(statement: Uint8Array): Uint8Array {
    const text = new TextDecoder().decode(statement.subarray(0, 24));
    if (!text.startsWith("pilot-task-result-v1\n") && !text.startsWith("pilot-task-verdict-v1\n")) {
      throw new NodeError("invalid_argument", "only task statements are signed for services");
    }
    return this.options.identity.sign(statement);
  }

  /** A node's identity key: ours, the tunnel's pinned one, else the registry's. */
  private async identityKeyOf(address: Address): Promise<Uint8Array> {
    if (address === this.address) return this.options.identity.publicKey;
    const peer = this.plane.router.peer(address);
    return peer ? peer.remote.identityKey : (await this.lookupPeer(address, false)).identityKey;
  }

  /**
   * Hands a task receipt signed by both parties to the registry. Idempotent: a
   * receipt the registry already holds is fine (the caller may resend after
   * registry_unavailable). Another verdict for the same task is already_exists.
   */
  async submitReceipt(receipt: TaskReceipt): Promise<void> {
    try {
      await this.registry.submitReceipt(receipt);
    } catch (e) {
      throw asNodeError(e);
    }
    this.scores.delete(receipt.worker);
  }

  /**
   * A node's polo score as the registry shows it to us, or null when we may
   * not see the node, or the registry does not answer or refuses for now
   * (rate_limited). Cached for a minute.
   */
  async reputationOf(node: Address): Promise<number | null> {
    if (networkOf(node) !== 0) return null;
    const id = nodeOf(node);
    const cached = this.scores.get(id);
    if (cached && cached.expires > Date.now()) return cached.score;
    let score: number | null;
    try {
      score = (await this.registry.scores([id]))[0]?.polo_score ?? null;
    } catch (e) {
      if (e instanceof RegistryError && (REGISTRY_CODES[e.code] === "registry_unavailable" || e.code === "rate_limited")) return null;
      throw asNodeError(e);
    }
    if (this.scores.size >= 1024) this.scores.clear();
    this.scores.set(id, { score, expires: Date.now() + SCORE_CACHE_MS });
    return score;
  }

  private async reputation(p: Params) {
    const address = await this.resolveTarget(str(p, "target"));
    if (networkOf(address) !== 0) throw new NodeError("not_found", "no such node", notFoundHint(formatAddress(address)));
    return this.registry.reputation(nodeOf(address)).catch((e) => {
      throw asNodeError(e, notFoundHint(formatAddress(address)));
    });
  }

  /** Scores of tunnel peers for `peers`: null for those we may not see, or all when the registry does not answer in a second. */
  private async peerScores(ids: number[]): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    const asks: Promise<void>[] = [];
    for (let i = 0; i < ids.length; i += 100) {
      asks.push(
        this.registry.scores(ids.slice(i, i + 100)).then((list) => {
          for (const s of list) out.set(s.node_id, s.polo_score);
        }),
      );
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.allSettled(asks), new Promise((resolve) => (timer = setTimeout(resolve, 1000)))]);
    clearTimeout(timer);
    return out;
  }

  private async peerKey(p: Params) {
    const address = await this.resolveTarget(str(p, "target"));
    let key: Uint8Array;
    let source: "self" | "tunnel" | "registry";
    if (address === this.address) {
      key = this.options.identity.publicKey;
      source = "self";
    } else {
      const peer = this.plane.router.peer(address);
      source = peer ? "tunnel" : "registry";
      key = peer ? peer.remote.identityKey : (await this.lookupPeer(address, false)).identityKey;
    }
    return { address: formatAddress(address), node_id: nodeOf(address), public_key: toBase64(key), source };
  }

  async shutdown(): Promise<void> {
    for (const s of this.services) {
      try {
        await s.stop();
      } catch (e) {
        this.log.warn("a service failed to stop cleanly", { service: s.name, error: (e as Error).message });
      }
    }
    this.exposes.close();
    await this.plane.shutdown();
  }
}

/** At most this many connections in one `connections` answer (the newest); `total` counts all. */
const CONNECTIONS_LISTED = 500;

/** How long a hostname's address is remembered (a renamed node is found again after this). */
const NAME_CACHE_MS = 60_000;
/** How long reputationOf keeps a node's score. */
const SCORE_CACHE_MS = 60_000;

function snapshotOf(state: TrustState): TrustSnapshot {
  return {
    trusted: state.trusted.map((t) => ({ nodeId: t.peer, publicKey: t.public_key, hostname: t.hostname, since: t.since })),
    inbound: state.inbound.map((r) => ({ nodeId: r.from, publicKey: r.public_key, hostname: r.hostname, reason: r.reason, createdAt: r.created_at })),
    outbound: state.outbound.map((r) => ({ nodeId: r.to, reason: r.reason, createdAt: r.created_at })),
  };
}

function notFoundHint(what: string): string {
  return `${what} does not exist, or it is private and has not trusted you: ask for trust with: pilot handshake ${what} "why"`;
}

const REGISTRY_CODES: Record<string, NodeErrorCode> = {
  not_found: "not_found",
  already_exists: "already_exists",
  unauthorized: "unauthorized",
  rate_limited: "rate_limited",
  invalid_argument: "invalid_argument",
  connection_failed: "registry_unavailable",
  connection_lost: "registry_unavailable",
  timeout: "registry_unavailable",
  closed: "registry_unavailable",
};

function asNodeError(e: unknown, notFound?: string): NodeError {
  if (e instanceof NodeError) return e;
  if (e instanceof RegistryError) {
    const code = REGISTRY_CODES[e.code] ?? "internal";
    const hint =
      code === "not_found" ? notFound : code === "registry_unavailable" ? "the registry is unreachable; the daemon keeps retrying (pilot info shows registry_connected)" : undefined;
    return new NodeError(code, e.message, hint);
  }
  return new NodeError("internal", e instanceof Error ? e.message : String(e));
}

function str(p: Params, key: string): string {
  const v = p[key];
  if (typeof v !== "string" || v === "") throw new NodeError("invalid_argument", `missing "${key}"`);
  return v;
}

function num(p: Params, key: string): number {
  const v = p[key];
  if (typeof v !== "number" || !Number.isInteger(v)) throw new NodeError("invalid_argument", `"${key}" must be an integer`);
  return v;
}

function snakeCaseKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase()), v]));
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
