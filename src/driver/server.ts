/** PilotServer: a bound virtual port that emits a PilotSocket per incoming connection. */
import { EventEmitter } from "node:events";
import type { IpcClient, IpcStream } from "../ipc/client.ts";
import type { NodeError } from "./errors.ts";
import { toSocketError } from "./errors.ts";
import { PilotSocket, type PilotAddressInfo, type PilotSocketOptions } from "./socket.ts";

/**
 * Events:
 * - `'connection' (socket: PilotSocket)` for each accepted stream;
 * - `'error' (error: PilotSocketError)` if the daemon goes away while listening
 *   (as for any EventEmitter, an 'error' nobody listens for throws);
 * - `'close'` once the port is unbound (connections already accepted live on).
 */
export class PilotServer extends EventEmitter {
  /** The bound virtual port. */
  readonly port: number;
  private open = true;
  /** Whether this server is keeping the process alive right now. */
  private holdsRef = true;
  private closing: Promise<void> | null = null;

  /** @internal Made by `Driver.listen`. */
  constructor(
    private readonly client: IpcClient,
    private readonly localAddress: string,
    private readonly listenerId: number,
    port: number,
    private readonly socketOptions: PilotSocketOptions,
  ) {
    super();
    this.port = port;
    client.retain();
  }

  /** True until `close()` (or the daemon going away). */
  get listening(): boolean {
    return this.open;
  }

  address(): PilotAddressInfo {
    return { address: this.localAddress, family: "pilot", port: this.port };
  }

  /** Unbinds the port at the daemon: a new `listen` on it can succeed as soon as this resolves. */
  close(callback?: (error?: Error) => void): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        if (!this.open) return;
        this.open = false;
        this.releaseRef();
        try {
          await this.client.unlisten(this.listenerId);
        } catch (error) {
          // The daemon being gone unbinds everything anyway.
          if (!this.client.closed) throw error;
        } finally {
          this.emit("close");
        }
      })();
    }
    if (callback) this.closing.then(() => callback(), (error: Error) => callback(error));
    return this.closing;
  }

  /** Keeps the process alive while listening (the default). */
  ref(): this {
    if (!this.holdsRef && this.open) {
      this.holdsRef = true;
      this.client.retain();
    }
    return this;
  }

  /** Lets the process exit even though this server is listening. */
  unref(): this {
    this.releaseRef();
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal A stream arrived on this port. */
  accept(stream: IpcStream): void {
    const socket = new PilotSocket(this.client, this.localAddress, this.socketOptions);
    socket.attach(stream);
    this.emit("connection", socket);
  }

  /** @internal The IPC connection ended under this server. */
  lost(error: NodeError | undefined): void {
    if (!this.open) return;
    this.open = false;
    this.releaseRef();
    if (error) this.emit("error", toSocketError(error));
    this.emit("close");
  }

  private releaseRef(): void {
    if (!this.holdsRef) return;
    this.holdsRef = false;
    this.client.release();
  }
}
