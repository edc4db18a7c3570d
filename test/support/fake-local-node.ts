/**
 * An in-memory LocalNode for tests of the IPC server and the driver. Nodes
 * added to one FakeNetwork reach each other by address: a dial finds the
 * target's listener and wires two FakeStreams back to back through bounded
 * pipes, so backpressure is real (a writer gets a short count when the pipe
 * is full and "writable" once the reader frees space). Events are delivered
 * on a later turn of the event loop, never re-entrantly, and held while the
 * owner has not set `onEvent` yet — the contract local-node.ts states.
 */
import {
  NodeError,
  type DatagramMessage,
  type LocalNode,
  type PortBinding,
  type StreamEvent,
  type StreamHandle,
} from "../../src/daemon/local-node.ts";
import { addressOf, formatAddress, nodeOf, type Address } from "../../src/protocol/address.ts";

export const FAKE_PIPE_CAPACITY = 256 * 1024;

/** Runs queued callbacks on the next macrotask, in batches. */
class Scheduler {
  private queue: (() => void)[] = [];
  private scheduled = false;

  defer(fn: () => void): void {
    this.queue.push(fn);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.run());
  }

  private run(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const fn of batch) fn();
  }
}

class Pipe {
  chunks: Uint8Array[] = [];
  bytes = 0;
  fin = false;
  /** The reading side is gone: writes are taken and dropped. */
  discard = false;
  constructor(readonly capacity: number) {}
}

export class FakeStream implements StreamHandle {
  peer!: FakeStream;
  /** Bytes for this side to read. */
  inbound!: Pipe;
  private held: StreamEvent[] = [];
  private handler: ((event: StreamEvent) => void) | null = null;
  private writeBlocked = false;
  private endEmitted = false;
  shutdownCalled = false;
  /** No further events for this side: closed, aborted or reset. */
  finished = false;
  noDelay: boolean | undefined;
  closedBy: "close" | "abort" | "peer-reset" | "graceful" | undefined;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly owner: FakeLocalNode,
    readonly id: number,
    readonly localPort: number,
    readonly remoteAddress: Address,
    readonly remotePort: number,
  ) {}

  get onEvent(): ((event: StreamEvent) => void) | null {
    return this.handler;
  }

  set onEvent(handler: ((event: StreamEvent) => void) | null) {
    this.handler = handler;
    if (handler && this.held.length > 0) this.scheduler.defer(() => this.deliver());
  }

  private emit(event: StreamEvent): void {
    if (this.finished && event.type !== "closed") return;
    if ((event.type === "readable" || event.type === "writable") && this.held.some((e) => e.type === event.type)) return;
    this.held.push(event);
    this.scheduler.defer(() => this.deliver());
  }

  private deliver(): void {
    while (this.handler && this.held.length > 0) {
      const event = this.held.shift()!;
      this.handler(event);
    }
  }

  write(data: Uint8Array): number {
    if (this.finished || this.shutdownCalled) return 0;
    const out = this.peer.inbound;
    if (out.discard) return data.length;
    const n = Math.min(data.length, out.capacity - out.bytes);
    if (n > 0) {
      const wasEmpty = out.bytes === 0;
      out.chunks.push(data.slice(0, n));
      out.bytes += n;
      this.owner.bytesCarried += n;
      if (wasEmpty) this.peer.emit({ type: "readable" });
    }
    if (n < data.length) this.writeBlocked = true;
    return n;
  }

  read(max: number): Uint8Array | null {
    const pipe = this.inbound;
    if (this.finished || pipe.bytes === 0 || max <= 0) {
      this.checkEnd();
      return null;
    }
    const head = pipe.chunks[0]!;
    let out: Uint8Array;
    if (head.length <= max) {
      out = head;
      pipe.chunks.shift();
    } else {
      out = head.subarray(0, max);
      pipe.chunks[0] = head.subarray(max);
    }
    pipe.bytes -= out.length;
    if (this.peer.writeBlocked) {
      this.peer.writeBlocked = false;
      this.peer.emit({ type: "writable" });
    }
    if (pipe.bytes === 0) this.checkEnd();
    return out;
  }

  private checkEnd(): void {
    if (this.inbound.fin && this.inbound.bytes === 0 && !this.endEmitted && !this.finished) {
      this.endEmitted = true;
      this.emit({ type: "end" });
      this.maybeClosed();
    }
  }

  private maybeClosed(): void {
    if (this.endEmitted && this.shutdownCalled && !this.finished) {
      this.finished = true;
      this.closedBy = "graceful";
      this.emit({ type: "closed" });
      this.owner.streams.delete(this);
    }
  }

  shutdown(): void {
    if (this.shutdownCalled || this.finished) return;
    this.shutdownCalled = true;
    this.peer.inbound.fin = true;
    if (!this.peer.finished) {
      if (this.peer.inbound.bytes === 0) this.peer.checkEnd();
    }
    this.maybeClosed();
  }

  close(): void {
    if (this.finished) return;
    this.shutdown();
    this.finished = true;
    this.closedBy ??= "close";
    this.inbound.discard = true;
    this.inbound.chunks = [];
    this.inbound.bytes = 0;
    this.owner.streams.delete(this);
    if (this.peer.writeBlocked) {
      this.peer.writeBlocked = false;
      this.peer.emit({ type: "writable" });
    }
  }

  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.closedBy = "abort";
    this.inbound.discard = true;
    this.inbound.chunks = [];
    this.inbound.bytes = 0;
    this.owner.streams.delete(this);
    this.peer.reset(new NodeError("connection_reset", "the peer reset the connection"));
  }

  /** The network (or the peer) kills this side with an error. */
  reset(error: NodeError): void {
    if (this.finished) return;
    this.finished = true;
    this.closedBy = "peer-reset";
    this.inbound.discard = true;
    this.inbound.chunks = [];
    this.inbound.bytes = 0;
    this.held = [];
    this.owner.streams.delete(this);
    this.held.push({ type: "closed", error });
    this.scheduler.defer(() => this.deliver());
  }

  /** The daemon ends this side without an error (as after a graceful close both ways): "closed" with no error. */
  terminate(): void {
    if (this.finished) return;
    this.finished = true;
    this.closedBy = "graceful";
    this.owner.streams.delete(this);
    this.held.push({ type: "closed" });
    this.scheduler.defer(() => this.deliver());
  }

  setNoDelay(noDelay: boolean): void {
    this.noDelay = noDelay;
  }
}

type Method = (params: Record<string, unknown>, node: FakeLocalNode) => unknown;

export class FakeLocalNode implements LocalNode {
  readonly listeners = new Map<number, (stream: StreamHandle) => void>();
  readonly datagramPorts = new Map<number, (message: DatagramMessage) => void>();
  readonly streams = new Set<FakeStream>();
  readonly methods = new Map<string, Method>();
  readonly calls: { method: string; params: Record<string, unknown> }[] = [];
  bytesCarried = 0;
  /** Milliseconds every dial waits before it is answered (to test requests in flight). */
  dialDelayMs = 0;
  private nextEphemeral = 49152;
  private nextStreamId = 1;

  constructor(
    private readonly network: FakeNetwork,
    readonly address: Address,
    public hostname: string | undefined,
  ) {
    this.methods.set("info", (_p, node) => ({
      address: formatAddress(node.address),
      node_id: nodeOf(node.address),
      hostname: node.hostname ?? null,
      connections: node.streams.size,
      ports: [...node.listeners.keys()],
    }));
    this.methods.set("resolve", (params) => {
      const name = params.hostname;
      if (typeof name !== "string") throw new NodeError("invalid_argument", "resolve needs a hostname");
      const target = this.network.byHostname(name);
      if (!target) throw new NodeError("not_found", `no node named "${name}" is visible to you`);
      return { hostname: name, address: formatAddress(target.address), node_id: nodeOf(target.address) };
    });
    this.methods.set("echo", (params) => params);
  }

  private allocatePort(inUse: Map<number, unknown>): number {
    for (let i = 0; i < 16384; i++) {
      const port = this.nextEphemeral;
      this.nextEphemeral = port === 65535 ? 49152 : port + 1;
      if (!inUse.has(port)) return port;
    }
    throw new NodeError("limit_exceeded", "no ephemeral port left");
  }

  listen(port: number, onAccept: (stream: StreamHandle) => void): PortBinding {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new NodeError("invalid_argument", `bad port ${port}`);
    if (port === 0) port = this.allocatePort(this.listeners);
    if (this.listeners.has(port)) throw new NodeError("port_in_use", `port ${port} is already bound`);
    this.listeners.set(port, onAccept);
    let open = true;
    return {
      port,
      close: () => {
        if (open && this.listeners.get(port) === onAccept) this.listeners.delete(port);
        open = false;
      },
    };
  }

  async dial(target: Address, port: number): Promise<StreamHandle> {
    if (this.dialDelayMs > 0) await Bun.sleep(this.dialDelayMs);
    const remote = this.network.nodes.get(target);
    if (!remote) throw new NodeError("not_found", `node ${formatAddress(target)} is not known`);
    const onAccept = remote.listeners.get(port);
    if (!onAccept) throw new NodeError("connection_refused", `${formatAddress(target)} has nothing listening on port ${port}`);
    const scheduler = this.network.scheduler;
    const localPort = this.allocatePort(new Map());
    const mine = new FakeStream(scheduler, this, this.nextStreamId++, localPort, target, port);
    const theirs = new FakeStream(scheduler, remote, remote.nextStreamId++, port, this.address, localPort);
    mine.peer = theirs;
    theirs.peer = mine;
    mine.inbound = new Pipe(this.network.pipeCapacity);
    theirs.inbound = new Pipe(this.network.pipeCapacity);
    this.streams.add(mine);
    remote.streams.add(theirs);
    onAccept(theirs);
    return mine;
  }

  bindDatagrams(port: number, onDatagram: (message: DatagramMessage) => void): PortBinding {
    if (port === 0) port = this.allocatePort(this.datagramPorts);
    if (this.datagramPorts.has(port)) throw new NodeError("port_in_use", `datagram port ${port} is already bound`);
    this.datagramPorts.set(port, onDatagram);
    let open = true;
    return {
      port,
      close: () => {
        if (open && this.datagramPorts.get(port) === onDatagram) this.datagramPorts.delete(port);
        open = false;
      },
    };
  }

  async sendDatagram(srcPort: number, target: Address, dstPort: number, data: Uint8Array): Promise<void> {
    if (data.length > 1275) throw new NodeError("invalid_argument", `datagram of ${data.length} bytes is larger than 1275`);
    const remote = this.network.nodes.get(target);
    if (!remote) throw new NodeError("not_found", `node ${formatAddress(target)} is not known`);
    const from = srcPort === 0 ? this.allocatePort(this.datagramPorts) : srcPort;
    const copy = data.slice();
    this.network.scheduler.defer(() => {
      remote.datagramPorts.get(dstPort)?.({ srcAddress: this.address, srcPort: from, dstPort, data: copy });
    });
  }

  async call(method: string, params: Record<string, unknown>): Promise<unknown> {
    this.calls.push({ method, params });
    const fn = this.methods.get(method);
    if (!fn) throw new NodeError("invalid_argument", `unknown method "${method}"`);
    return await fn(params, this);
  }
}

export class FakeNetwork {
  readonly nodes = new Map<Address, FakeLocalNode>();
  readonly scheduler = new Scheduler();

  constructor(readonly pipeCapacity: number = FAKE_PIPE_CAPACITY) {}

  addNode(node: number, options: { network?: number; hostname?: string } = {}): FakeLocalNode {
    const address = addressOf(options.network ?? 0, node);
    const fake = new FakeLocalNode(this, address, options.hostname);
    this.nodes.set(address, fake);
    return fake;
  }

  byHostname(name: string): FakeLocalNode | undefined {
    for (const node of this.nodes.values()) if (node.hostname === name) return node;
    return undefined;
  }
}
