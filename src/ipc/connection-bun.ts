/**
 * The IPC connection over `Bun.connect` (Bun only): its socket already has
 * the `ByteSink` contract (write returns the bytes taken, -1 when closed).
 * Referenced only through `openIpcConnection`, so other runtimes never call it.
 */
import type { Socket } from "bun";
import type { IpcConnection, IpcConnectionHandler } from "./connection.ts";

class BunSocketConnection implements IpcConnection {
  handler: IpcConnectionHandler | null = null;
  private closed = false;

  constructor(private readonly socket: Socket<BunSocketConnection | undefined>) {}

  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number {
    return this.socket.write(data, byteOffset, byteLength);
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

  /** @internal */
  markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler?.closed();
  }
}

export async function connectBunSocket(socketPath: string): Promise<IpcConnection> {
  const socket = await Bun.connect<BunSocketConnection | undefined>({
    unix: socketPath,
    data: undefined,
    socket: {
      data(s, chunk) {
        s.data?.handler?.data(chunk);
      },
      drain(s) {
        s.data?.handler?.drain();
      },
      close(s) {
        s.data?.markClosed();
      },
      error(s) {
        s.data?.markClosed();
      },
    },
  });
  const connection = new BunSocketConnection(socket);
  socket.data = connection;
  return connection;
}
