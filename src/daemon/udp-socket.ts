/**
 * The daemon's one UDP socket, which carries every peer. A thin shell:
 * frames queued with `send` during a turn of the event loop go out together
 * with `sendMany` at the end of the turn (one syscall batch instead of one per
 * frame); received datagrams go straight to `onDatagram`. The kernel receive
 * buffer is enlarged (the 208 KiB default drops packets above ~25k/s).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

export interface UdpSocketOptions {
  hostname: string;
  port: number;
  /** Requested SO_RCVBUF/SO_SNDBUF in bytes (the kernel may cap it). */
  bufferBytes?: number;
  onDatagram(data: Uint8Array, fromAddress: string, fromPort: number): void;
}

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;

type Libc = {
  setsockopt(fd: number, level: number, name: number, value: unknown, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: unknown, len: unknown): number;
};
let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  if (process.platform !== "linux") return (libc = null);
  try {
    const lib = dlopen("libc.so.6", {
      setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
      getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    });
    libc = lib.symbols as unknown as Libc;
  } catch {
    libc = null;
  }
  return libc;
}

/** Sets a socket buffer size, trying the privileged FORCE variant first; returns the size now in effect, or 0 if unknown. */
function setBuffer(fd: number, forceName: number, name: number, bytes: number): number {
  const c = loadLibc();
  if (!c || typeof fd !== "number") return 0;
  const value = new Int32Array([bytes]);
  if (c.setsockopt(fd, SOL_SOCKET, forceName, ptr(value), 4) !== 0) c.setsockopt(fd, SOL_SOCKET, name, ptr(value), 4);
  const out = new Int32Array(1);
  const len = new Uint32Array([4]);
  return c.getsockopt(fd, SOL_SOCKET, name, ptr(out), ptr(len)) === 0 ? out[0]! : 0;
}

export class UdpSocket {
  private queue: (Uint8Array | number | string)[] = [];
  private flushScheduled = false;
  private closed = false;
  sentDatagrams = 0;
  receivedDatagrams = 0;
  sendErrors = 0;

  private constructor(
    private readonly socket: Bun.udp.Socket<"uint8array">,
    readonly receiveBufferBytes: number,
    readonly sendBufferBytes: number,
  ) {}

  static async open(options: UdpSocketOptions): Promise<UdpSocket> {
    let self: UdpSocket | undefined;
    const socket = await Bun.udpSocket({
      hostname: options.hostname,
      port: options.port,
      binaryType: "uint8array",
      socket: {
        data(_s, data, port, address) {
          if (!self) return;
          self.receivedDatagrams++;
          options.onDatagram(data, address, port);
        },
        error(_s, _err) {
          if (self) self.sendErrors++;
        },
      },
    });
    const fd = (socket as unknown as { fd?: number }).fd ?? -1;
    const want = options.bufferBytes ?? 8 * 1024 * 1024;
    const rcv = setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, want);
    const snd = setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, want);
    self = new UdpSocket(socket, rcv, snd);
    return self;
  }

  get port(): number {
    return this.socket.port;
  }

  get hostname(): string {
    return this.socket.hostname;
  }

  /**
   * Queues one datagram; it leaves at the end of the current event-loop turn.
   * `data` must not be modified until then (callers hand over fresh buffers).
   */
  send(data: Uint8Array, address: string, port: number): void {
    if (this.closed) return;
    this.queue.push(data, port, address);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends everything queued now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    try {
      const sent = this.socket.sendMany(batch as any);
      const total = batch.length / 3;
      this.sentDatagrams += typeof sent === "number" ? sent : total;
      if (typeof sent === "number" && sent < total) this.sendErrors += total - sent;
    } catch {
      // A bad address in the batch: send one by one so the others still go.
      for (let i = 0; i < batch.length; i += 3) {
        try {
          if (this.socket.send(batch[i] as Uint8Array, batch[i + 1] as number, batch[i + 2] as string)) this.sentDatagrams++;
        } catch {
          this.sendErrors++;
        }
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.socket.close();
  }
}
