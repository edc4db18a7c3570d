/** DatagramSocket: a bound datagram port; only this socket receives what arrives on it. */
import { EventEmitter } from "node:events";
import type { DatagramEvent, IpcClient } from "../ipc/client.ts";
import { formatAddress } from "../protocol/address.ts";
import type { NodeError } from "./errors.ts";

/** One received datagram. */
export interface Datagram {
  /** Sender's Pilot address, `N:NNNN.HHHH.LLLL`. */
  readonly from: string;
  /** Sender's port (reply to it with `send(from, fromPort, ...)`). */
  readonly fromPort: number;
  /** The local port it arrived on. */
  readonly port: number;
  readonly data: Uint8Array;
}

export interface DatagramSocketOptions {
  /**
   * Most datagrams an async iterator holds unread; beyond it the oldest are
   * dropped (datagrams are unreliable by contract; memory stays bounded).
   * Default 1024.
   */
  maxQueued?: number;
}

interface Waiter {
  queue: Datagram[];
  wake: (() => void) | null;
}

/**
 * Events: `'message' (datagram: Datagram)`, `'close'`.
 * Also an async iterable: `for await (const d of socket) ...` ends when the socket closes.
 */
export class DatagramSocket extends EventEmitter implements AsyncIterable<Datagram> {
  /** The bound port. */
  readonly port: number;
  /** Datagrams dropped because an iterator's queue was full. */
  dropped = 0;
  private open = true;
  private holdsRef = true;
  private readonly iterators = new Set<Waiter>();
  private readonly maxQueued: number;

  /** @internal Made by `Driver.bindDatagrams`. */
  constructor(
    private readonly client: IpcClient,
    private readonly bindingId: number,
    port: number,
    private readonly sendFrom: (target: string, port: number, data: Uint8Array | string, fromPort: number) => Promise<void>,
    options: DatagramSocketOptions = {},
  ) {
    super();
    this.port = port;
    this.maxQueued = options.maxQueued ?? 1024;
    client.retain();
  }

  /** Sends one datagram from this socket's port. */
  send(target: string, port: number, data: Uint8Array | string): Promise<void> {
    return this.sendFrom(target, port, data, this.port);
  }

  /** Unbinds the port. */
  async close(): Promise<void> {
    if (!this.open) return;
    this.finish();
    try {
      await this.client.unbindDatagrams(this.bindingId);
    } catch (error) {
      if (!this.client.closed) throw error;
    }
  }

  ref(): this {
    if (!this.holdsRef && this.open) {
      this.holdsRef = true;
      this.client.retain();
    }
    return this;
  }

  unref(): this {
    if (this.holdsRef) {
      this.holdsRef = false;
      this.client.release();
    }
    return this;
  }

  [Symbol.asyncIterator](): AsyncIterator<Datagram> {
    const waiter: Waiter = { queue: [], wake: null };
    this.iterators.add(waiter);
    const done = (): IteratorResult<Datagram> => {
      this.iterators.delete(waiter);
      return { done: true, value: undefined };
    };
    return {
      next: async () => {
        for (;;) {
          const next = waiter.queue.shift();
          if (next) return { done: false, value: next };
          if (!this.open) return done();
          await new Promise<void>((resolve) => (waiter.wake = resolve));
          waiter.wake = null;
        }
      },
      return: async () => done(),
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal */
  deliver(event: DatagramEvent): void {
    const datagram: Datagram = {
      from: formatAddress(event.srcAddress),
      fromPort: event.srcPort,
      port: event.dstPort,
      data: event.data,
    };
    this.emit("message", datagram);
    for (const waiter of this.iterators) {
      if (waiter.queue.length >= this.maxQueued) {
        waiter.queue.shift();
        this.dropped++;
      }
      waiter.queue.push(datagram);
      waiter.wake?.();
    }
  }

  /** @internal The IPC connection ended. */
  lost(_error: NodeError | undefined): void {
    if (this.open) this.finish();
  }

  private finish(): void {
    this.open = false;
    this.unref();
    for (const waiter of this.iterators) waiter.wake?.();
    this.emit("close");
  }
}
