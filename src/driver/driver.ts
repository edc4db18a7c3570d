/** The Driver: one app's connection to its local Pilot daemon, and everything built on it. */
import { EventEmitter } from "node:events";
import { IpcClient, type IpcStream } from "../ipc/client.ts";
import { resolveSocketPath } from "../ipc/paths.ts";
import { formatAddress, parseAddress, type Address } from "../protocol/address.ts";
import type { CoreEvent, CoreEventType, LocalEvent } from "../shared/events.ts";
import type {
  ApproveResult,
  HandshakeResult,
  PendingResult,
  PublishEventResult,
  RecentEventsResult,
  RejectResult,
  SetHostnameResult,
  SetTagsResult,
  SetVisibilityResult,
  TrustedResult,
  UntrustResult,
} from "../shared/control.ts";
import { DatagramSocket, type DatagramSocketOptions } from "./datagram.ts";
import { NodeError } from "./errors.ts";
import { checkFilters, emitterNames, EventStream, isLocalEventName, type EventsOptions } from "./events.ts";
import { PilotAgent, pilotFetch, serveHttp, type HttpHandlerOrServer, type PilotAgentOptions, type PilotHttpServer, type ServeHttpOptions } from "./http.ts";
import { daemonIdentity, SECURE_PORT, SecureServer, SecureSocket, whenSecure, type SecureSocketOptions } from "./secure.ts";
import { PilotServer } from "./server.ts";
import { openPublisher, publish, subscribe, type BrokerOptions, type Publisher, type PublishResult, type SubscribeOptions, type Subscription } from "./pubsub.ts";
import { PilotSocket, type PilotSocketOptions } from "./socket.ts";
import { parseTarget } from "./target.ts";

export interface ConnectOptions {
  /** The daemon's IPC socket. Default: PILOT_SOCKET, else `$PILOT_HOME/pilot.sock` (`~/.pilot/pilot.sock`). */
  socketPath?: string;
  /** Use the daemon of this PILOT_HOME (`<home>/pilot.sock`). */
  home?: string;
  /** How long to wait for the daemon to answer, in ms. Default 5000. */
  timeoutMs?: number;
}

export interface DialOptions extends PilotSocketOptions {
  /** Give up if the connection is not established within this many ms (the daemon's default otherwise). */
  timeoutMs?: number;
}

export interface SendOptions {
  /** Source port: one bound with `bindDatagrams` (replies come back to it). Default 0: an ephemeral port. */
  fromPort?: number;
}

/**
 * Connects to the local daemon. Fails with NodeError `not_running` (and a
 * hint to run `pilot daemon start`) when no daemon listens.
 */
export async function connect(options: ConnectOptions = {}): Promise<Driver> {
  const socketPath = resolveSocketPath(options);
  const { client, hello } = await IpcClient.connect(socketPath, { connectTimeoutMs: options.timeoutMs });
  return new Driver(client, hello.address, hello.hostname ?? undefined);
}

/** Typed listeners: the daemon's core events by type, and the Driver's own 'close'. */
export interface Driver {
  on<K extends CoreEventType>(type: K, listener: (event: CoreEvent<K>) => void): this;
  on(type: "close", listener: (error?: NodeError) => void): this;
  on(type: string, listener: (event: LocalEvent) => void): this;
  on(type: string | symbol, listener: (...args: any[]) => void): this;
  once<K extends CoreEventType>(type: K, listener: (event: CoreEvent<K>) => void): this;
  once(type: "close", listener: (error?: NodeError) => void): this;
  once(type: string, listener: (event: LocalEvent) => void): this;
  once(type: string | symbol, listener: (...args: any[]) => void): this;
}

/**
 * A connection to the local Pilot daemon. Events: `'close' (error?: NodeError)`
 * when the connection to the daemon ends (with an error unless `close()` ended it).
 *
 * Local events (trust requests, messages, files, peers going offline: see
 * `events()`) are EventEmitter events too: `on("trust.request", fn)` gets that
 * type, `on("trust", fn)` (or `"trust.*"`) every `trust.` type, `on("*", fn)`
 * all of them. The first such listener subscribes, removing the last one
 * unsubscribes; while one is attached it keeps the process alive.
 *
 * An idle Driver does not keep the process alive; open sockets, listening
 * servers, bound datagram sockets, event subscriptions and calls in flight do
 * (see their `unref()`).
 */
export class Driver extends EventEmitter {
  /** This node's Pilot address, `N:NNNN.HHHH.LLLL`. */
  readonly address: string;
  /** This node's hostname when the driver connected (refresh with `info()`). */
  hostname: string | undefined;
  private readonly servers = new Set<PilotServer>();
  private readonly datagramSockets = new Set<DatagramSocket>();
  private agent: PilotAgent | null = null;
  private secureAgent: PilotAgent | null = null;
  private readonly eventStreams = new Set<EventStream>();
  /** The subscription behind `on(type, …)` listeners, while any is attached. */
  private emitterFeed: EventStream | null = null;

  /** @internal Use `connect()`. */
  constructor(
    private readonly client: IpcClient,
    address: string,
    hostname: string | undefined,
  ) {
    super();
    this.address = address;
    this.hostname = hostname;
    client.onClose = (error) => {
      for (const server of this.servers) server.lost(error);
      for (const socket of this.datagramSockets) socket.lost(error);
      for (const stream of [...this.eventStreams]) stream.lost(error);
      this.servers.clear();
      this.datagramSockets.clear();
      this.agent?.destroy();
      this.secureAgent?.destroy();
      this.emit("close", error);
    };
    this.on("newListener", (name: string | symbol) => {
      if (isLocalEventName(name)) this.startEmitterFeed();
    });
    this.on("removeListener", (name: string | symbol) => {
      if (isLocalEventName(name)) this.stopEmitterFeedIfUnused();
    });
  }

  /** The IPC socket this driver is connected to. */
  get socketPath(): string {
    return this.client.socketPath;
  }

  /** True once the connection to the daemon has ended. */
  get closed(): boolean {
    return this.client.closed;
  }

  /**
   * The full address for a target: a full address (returned normalised), a
   * bare node id (network 0), or a hostname (asked of the daemon, which asks
   * the registry). Fails with `not_found` for an unknown or invisible name.
   */
  async resolve(hostOrAddr: string): Promise<string> {
    return formatAddress(await this.resolveAddress(hostOrAddr));
  }

  /**
   * Opens a stream to `port` on a peer; resolves once it is established.
   * Errors (NodeError): `not_found`, `not_trusted`, `unreachable`,
   * `connection_refused`, `timeout`, `not_running`, ...
   */
  async dial(hostOrAddr: string, port: number, options: DialOptions = {}): Promise<PilotSocket> {
    checkPort(port);
    const address = await this.resolveAddress(hostOrAddr);
    const socket = new PilotSocket(this.client, this.address, options);
    let stream: IpcStream;
    try {
      stream = await this.client.dial(address, port, options.timeoutMs);
    } catch (error) {
      socket.destroy();
      throw error;
    }
    socket.attach(stream);
    return socket;
  }

  /**
   * Like `net.createConnection(port, host)`: returns a socket at once, in its
   * connecting state; it emits 'connect' when established, or 'error'
   * (PilotSocketError with an errno-style `code`) if that fails. Writes made
   * before then are sent once connected.
   */
  connect(port: number, hostOrAddr: string, options: DialOptions = {}, connectListener?: () => void): PilotSocket {
    const socket = new PilotSocket(this.client, this.address, options);
    if (connectListener) socket.once("connect", connectListener);
    (async () => {
      checkPort(port);
      const address = await this.resolveAddress(hostOrAddr);
      if (socket.destroyed) return;
      socket.attach(await this.client.dial(address, port, options.timeoutMs));
    })().catch((error: unknown) => socket.failConnect(error instanceof Error ? error : new Error(String(error))));
    return socket;
  }

  /**
   * Binds a virtual port for incoming streams; the server emits a
   * PilotSocket per connection. `close()` on it really unbinds the port.
   * Errors: `port_in_use`, `invalid_argument`.
   */
  async listen(port: number, options: PilotSocketOptions = {}): Promise<PilotServer> {
    checkPort(port);
    let server: PilotServer | undefined;
    const held: IpcStream[] = [];
    const { listener, port: bound } = await this.client.listen(port, (stream) => {
      // A connection can come in before this promise's continuation runs.
      if (server) server.accept(stream);
      else held.push(stream);
    });
    server = new PilotServer(this.client, this.address, listener, bound, options);
    this.servers.add(server);
    server.once("close", () => this.servers.delete(server!));
    if (held.length > 0) {
      // Let the caller attach its 'connection' handler first (its continuation is a microtask).
      setImmediate(() => {
        for (const stream of held) server!.accept(stream);
      });
    }
    return server;
  }

  /**
   * Opens a secure channel (port 443 style) to a peer: a Pilot stream, then a
   * handshake in which both nodes prove their identities (the daemon signs;
   * each side checks the other against the key its daemon pins for the
   * stream's address) and agree on keys of this connection's own, then
   * AES-256-GCM records inside the stream. Resolves once that is done.
   * Errors (NodeError): those of `dial`, plus `unauthorized` (the peer is not
   * who its address says, or it refused this node's identity), `timeout`
   * (no handshake in `handshakeTimeoutMs`), `connection_reset` (the port is
   * not a secure listener).
   */
  async dialSecure(hostOrAddr: string, port: number = SECURE_PORT, options: DialOptions & SecureSocketOptions = {}): Promise<SecureSocket> {
    const inner = await this.dial(hostOrAddr, port, { ...innerOptions(options), timeoutMs: options.timeoutMs });
    return whenSecure(new SecureSocket(inner, "client", options.identity ?? daemonIdentity(this), options));
  }

  /**
   * Like `connect`, over the secure channel: returns the socket at once; it
   * emits 'connect' (and 'secureConnect') when the handshake is done, or
   * 'error'. Writes made before then are sent once it is.
   */
  connectSecure(port: number, hostOrAddr: string, options: DialOptions & SecureSocketOptions = {}, connectListener?: () => void): SecureSocket {
    const inner = this.connect(port, hostOrAddr, { ...innerOptions(options), timeoutMs: options.timeoutMs });
    const socket = new SecureSocket(inner, "client", options.identity ?? daemonIdentity(this), options);
    if (connectListener) socket.once("secureConnect", connectListener);
    return socket;
  }

  /**
   * Accepts secure channels on `port` (default 443): the server emits
   * 'connection' with a SecureSocket once a client's handshake succeeded,
   * and 'handshakeError' for one that failed.
   */
  async listenSecure(port: number = SECURE_PORT, options: SecureSocketOptions = {}): Promise<SecureServer> {
    const inner = await this.listen(port, innerOptions(options));
    return new SecureServer(inner, options.identity ?? daemonIdentity(this), options);
  }

  /** Sends one datagram (best effort, like UDP). Errors are this call's own. */
  async sendTo(hostOrAddr: string, port: number, data: Uint8Array | string, options: SendOptions = {}): Promise<void> {
    checkPort(port);
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const address = await this.resolveAddress(hostOrAddr);
    await this.client.sendDatagram(options.fromPort ?? 0, address, port, bytes);
  }

  /**
   * Receives the datagrams addressed to `port` (0 = pick a free one): only
   * this socket gets them. Use its 'message' event or `for await`.
   */
  async bindDatagrams(port: number, options: DatagramSocketOptions = {}): Promise<DatagramSocket> {
    checkPort(port);
    let socket: DatagramSocket | undefined;
    const { binding, port: bound } = await this.client.bindDatagrams(port, (event) => socket?.deliver(event));
    socket = new DatagramSocket(
      this.client,
      binding,
      bound,
      (target, toPort, data, fromPort) => this.sendTo(target, toPort, data, { fromPort }),
      options,
    );
    this.datagramSockets.add(socket);
    socket.once("close", () => this.datagramSockets.delete(socket!));
    return socket;
  }

  /**
   * Any control operation of the daemon by name, with JSON params and result
   * (e.g. "info", "peers", "connections", "set_hostname", "handshake",
   * "approve", "trusted"). Fails with the daemon's NodeError.
   */
  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    return this.client.request(method, params);
  }

  // ---- local events ----------------------------------------------------------

  /**
   * The daemon's local events as an async iterator, from now on (or from
   * `since`): `for await (const e of pilot.events({ types: ["trust.request"] }))`.
   * Leaving the loop unsubscribes. Errors (NodeError): `invalid_argument`
   * (a bad filter or `since`; a daemon too old for events), `limit_exceeded`
   * (more than 16 subscriptions on one driver), `not_running`.
   */
  events(options: EventsOptions = {}): EventStream {
    const stream = new EventStream(this.client, options, (s) => this.eventStreams.delete(s));
    this.eventStreams.add(stream);
    return stream;
  }

  /** The events the daemon keeps (its last 1000), oldest first; `limit` keeps the newest. */
  async recentEvents(options: { types?: readonly string[]; since?: number; limit?: number } = {}): Promise<RecentEventsResult<LocalEvent>> {
    checkFilters(options.types);
    const params: Record<string, unknown> = {};
    if (options.types !== undefined) params.types = [...options.types];
    if (options.since !== undefined) params.since = options.since;
    if (options.limit !== undefined) params.limit = options.limit;
    return (await this.call("events_recent", params)) as RecentEventsResult<LocalEvent>;
  }

  /**
   * Publishes this app's own event into the node's feed (other apps, `pilot
   * events` and the webhook see it). Its type must start with `app.`
   * (`app.task.done`); `data` is a JSON object of at most 63 KiB.
   */
  async publishEvent(type: string, data: Record<string, unknown> = {}): Promise<PublishEventResult> {
    return (await this.call("events_publish", { type, data })) as PublishEventResult;
  }

  private startEmitterFeed(): void {
    if (this.emitterFeed || this.client.closed) return;
    const feed = this.events();
    this.emitterFeed = feed;
    void (async () => {
      try {
        for await (const event of feed) {
          for (const name of emitterNames(event.type)) {
            try {
              this.emit(name, event);
            } catch (error) {
              // A listener's bug is the app's, as with any EventEmitter; it must not break the feed.
              process.nextTick(() => {
                throw error;
              });
            }
          }
        }
      } catch (error) {
        if (this.listenerCount("error") > 0) this.emit("error", error);
        else if (!(error instanceof NodeError && error.code === "not_running")) process.emitWarning(`pilot: local event listeners stopped: ${(error as Error).message}`);
      } finally {
        if (this.emitterFeed === feed) this.emitterFeed = null;
      }
    })();
  }

  private stopEmitterFeedIfUnused(): void {
    if (!this.emitterFeed) return;
    if (this.eventNames().some((name) => isLocalEventName(name) && this.listenerCount(name) > 0)) return;
    const feed = this.emitterFeed;
    this.emitterFeed = null;
    void feed.close();
  }

  // ---- trust (mutual: both nodes must agree) ----------------------------------

  /**
   * Asks `target` (address, node id or hostname) for trust, with a reason its
   * operator sees. `status` is `trusted` at once when it had asked us too.
   * Errors: `not_found`, `already_exists` (already trusted or asked), `registry_unavailable`.
   */
  handshake(target: string, reason = ""): Promise<HandshakeResult> {
    return this.typedCall("handshake", { target: requireTarget(target), reason });
  }

  /** Approves a pending request from `target` (address, node id, or the hostname shown by `pending()`). Errors: `not_found`. */
  approve(target: string): Promise<ApproveResult> {
    return this.typedCall("approve", { target: requireTarget(target) });
  }

  /** Rejects a pending request from `target`, optionally saying why. Errors: `not_found`. */
  reject(target: string, reason?: string): Promise<RejectResult> {
    return this.typedCall("reject", reason === undefined ? { target: requireTarget(target) } : { target: requireTarget(target), reason });
  }

  /** Trust requests waiting for this node (`pending`) and this node's unanswered ones (`outgoing`). */
  pending(): Promise<PendingResult> {
    return this.typedCall("pending", {});
  }

  /** The nodes this node trusts. */
  trusted(): Promise<TrustedResult> {
    return this.typedCall("trusted", {});
  }

  /**
   * Ends trust with `target` (or withdraws our request): its connections are
   * reset at once, on both sides. Errors: `not_found` (it was not trusted).
   */
  untrust(target: string): Promise<UntrustResult> {
    return this.typedCall("untrust", { target: requireTarget(target) });
  }

  // ---- this node in the registry ------------------------------------------------

  /** Replaces this node's tags (`[]` clears them). Errors: `invalid_argument` (a bad tag). */
  setTags(tags: readonly string[]): Promise<SetTagsResult> {
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === "string")) throw new NodeError("invalid_argument", "tags must be an array of strings");
    return this.typedCall("set_tags", { tags: [...tags] });
  }

  /** Claims a hostname (`""` or null releases it); refreshes `hostname`. Errors: `already_exists`, `invalid_argument`. */
  async setHostname(name: string | null): Promise<SetHostnameResult> {
    const r = await this.typedCall<SetHostnameResult>("set_hostname", { hostname: name ?? "" });
    this.hostname = r.hostname ?? undefined;
    return r;
  }

  /** Public nodes are visible to everyone; private ones (the default) only to the nodes they trust. */
  setVisibility(isPublic: boolean): Promise<SetVisibilityResult> {
    if (typeof isPublic !== "boolean") throw new NodeError("invalid_argument", "setVisibility takes true (public) or false (private)");
    return this.typedCall("set_visibility", { public: isPublic });
  }

  private async typedCall<T>(method: string, params: Record<string, unknown>): Promise<T> {
    const result = await this.call(method, params);
    if (typeof result !== "object" || result === null) throw new NodeError("internal", `the daemon's answer to ${method} is malformed`);
    return result as T;
  }

  /** The daemon's `info` (address, hostname, peers, ...); refreshes `hostname`. */
  async info(): Promise<Record<string, unknown>> {
    const info = (await this.call("info")) as Record<string, unknown>;
    if (info && typeof info === "object" && "hostname" in info) {
      this.hostname = typeof info.hostname === "string" && info.hostname !== "" ? info.hostname : undefined;
    }
    return info;
  }

  /** A new keep-alive `http.Agent` that dials through Pilot (see PilotAgent); `{ secure: true }` for the secure channel. */
  httpAgent(options?: PilotAgentOptions): PilotAgent {
    return new PilotAgent(this, options);
  }

  /** Serves a `node:http` handler, express app or `http.Server` on a Pilot port; `{ secure: true }` serves it over the secure channel. */
  serveHttp(port: number, handlerOrServer: HttpHandlerOrServer, options?: ServeHttpOptions): Promise<PilotHttpServer> {
    return serveHttp(this, port, handlerOrServer, options);
  }

  /**
   * `fetch` through Pilot, e.g. `driver.fetch("http://agent-a/api/status")`.
   * `https://agent-a/…` goes over the secure channel (default port 443; not
   * TLS). One shared keep-alive agent per kind.
   */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const url = input instanceof Request ? input.url : String(input);
    if (/^https:/i.test(url)) {
      this.secureAgent ??= new PilotAgent(this, { secure: true });
      return pilotFetch(this.secureAgent, input, init);
    }
    this.agent ??= new PilotAgent(this);
    return pilotFetch(this.agent, input, init);
  }

  /**
   * Subscribes to topics on a broker (a node running the pub/sub service,
   * port 1002): `for await (const event of pilot.subscribe("agent-a", "sensors.>"))`.
   * Patterns may use `*` (one segment) and `>` or `#` (the rest). `break`
   * closes the subscription; `await sub.ready` waits until the broker has it.
   */
  subscribe(hostOrAddr: string, topics: string | readonly string[], options?: SubscribeOptions): Subscription {
    return subscribe(this, hostOrAddr, topics, options);
  }

  /** Publishes one event on a broker; resolves on the broker's ack (`delivered`: subscribers reached). */
  publish(hostOrAddr: string, topic: string, data: Uint8Array | string, options?: BrokerOptions): Promise<PublishResult> {
    return publish(this, hostOrAddr, topic, data, options);
  }

  /** A dedicated publishing connection to a broker, for many events (close it when done). */
  publisher(hostOrAddr: string, options?: BrokerOptions): Promise<Publisher> {
    return openPublisher(this, hostOrAddr, options);
  }

  /** Disconnects from the daemon: its streams close, its ports are unbound, its event iterators end. */
  async close(): Promise<void> {
    for (const stream of [...this.eventStreams]) stream.lost(undefined);
    this.agent?.destroy();
    this.secureAgent?.destroy();
    this.client.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async resolveAddress(hostOrAddr: string): Promise<Address> {
    const target = parseTarget(hostOrAddr);
    if (target.kind === "address") return target.address;
    const result = (await this.call("resolve", { hostname: target.hostname })) as Record<string, unknown> | null;
    const text = result && typeof result === "object" ? result.address : undefined;
    const parsed = typeof text === "string" ? parseAddress(text) : null;
    if (!parsed?.ok) throw new NodeError("internal", `the daemon's answer to resolve "${target.hostname}" has no address`);
    return parsed.value;
  }
}

/** The options of the Pilot stream under a secure socket: it always allows half-open (the secure layer has its own end). */
function innerOptions(options: PilotSocketOptions): PilotSocketOptions {
  return { highWaterMark: options.highWaterMark, allowHalfOpen: true };
}

function requireTarget(target: string): string {
  if (typeof target !== "string" || target.trim() === "") throw new NodeError("invalid_argument", "a target is required", "name a node by address (0:0000.0000.002A), node id (42) or hostname");
  return target.trim();
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new NodeError("invalid_argument", `port ${port} is not 0-65535`);
  }
}
