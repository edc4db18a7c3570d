/** The Driver: one app's connection to its local Pilot daemon, and everything built on it. */
import { EventEmitter } from "node:events";
import { IpcClient, type IpcStream } from "../ipc/client.ts";
import { resolveSocketPath } from "../ipc/paths.ts";
import { formatAddress, parseAddress, type Address } from "../protocol/address.ts";
import { DatagramSocket, type DatagramSocketOptions } from "./datagram.ts";
import { NodeError } from "./errors.ts";
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

/**
 * A connection to the local Pilot daemon. Events: `'close' (error?: NodeError)`
 * when the connection to the daemon ends (with an error unless `close()` ended it).
 *
 * An idle Driver does not keep the process alive; open sockets, listening
 * servers, bound datagram sockets and calls in flight do (see their `unref()`).
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
      this.servers.clear();
      this.datagramSockets.clear();
      this.agent?.destroy();
      this.secureAgent?.destroy();
      this.emit("close", error);
    };
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

  /** Disconnects from the daemon: its streams close and its ports are unbound. */
  async close(): Promise<void> {
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

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new NodeError("invalid_argument", `port ${port} is not 0-65535`);
  }
}
