/**
 * The IPC connection over `node:net` (Node.js; Bun implements it too).
 *
 * A node:net socket buffers every write; `FrameWriter` instead expects a sink
 * that takes what it can and says how much. So: while the socket is below its
 * high-water mark, a write takes everything (copied, because the writer
 * reuses its buffer); once the socket asks for a drain, writes take nothing
 * until 'drain', and the writer keeps the rest. Memory stays bounded by the
 * socket's high-water mark plus one flush.
 */
import { createConnection, type Socket } from "node:net";
import type { IpcConnection, IpcConnectionHandler } from "./connection.ts";

class NodeNetConnection implements IpcConnection {
  handler: IpcConnectionHandler | null = null;
  private closed = false;

  constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => this.handler?.data(chunk));
    socket.on("drain", () => this.handler?.drain());
    // 'error' is always followed by 'close'; without a listener node would throw it.
    socket.on("error", () => {});
    socket.on("close", () => this.markClosed());
    socket.on("end", () => this.markClosed());
  }

  write(data: Uint8Array, byteOffset = 0, byteLength = data.length - byteOffset): number {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return -1;
    if (this.socket.writableNeedDrain) return 0;
    this.socket.write(data.slice(byteOffset, byteOffset + byteLength));
    return byteLength;
  }

  end(): void {
    this.socket.end();
  }

  ref(): void {
    this.socket.ref();
  }

  unref(): void {
    this.socket.unref();
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler?.closed();
  }
}

export function connectNodeNet(socketPath: string): Promise<IpcConnection> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath });
    const onError = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(new NodeNetConnection(socket));
    });
  });
}
