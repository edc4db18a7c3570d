/**
 * The daemon's one UDP socket, which carries every peer. A thin shell:
 * frames queued with `send` during a turn of the event loop go out together
 * at the end of the turn; received datagrams go straight to `onDatagram`. The
 * kernel receive buffer is enlarged (the 208 KiB default drops packets above
 * ~25k/s).
 *
 * Sending: a run of frames of one size to one endpoint (a bulk transfer's
 * full segments) leaves as one `send` with UDP generic segmentation offload
 * (Linux UDP_SEGMENT): the kernel cuts the buffer back into the same
 * datagrams, each under the MTU, for a fraction of the per-datagram cost.
 * UDP_SEGMENT is set only around that one send, so no other datagram is ever
 * split. Everything else (and everything where GSO is unavailable) goes out
 * with `sendMany` (sendmmsg).
 *
 * Don't-fragment: frames queued with `dontFragment` (path MTU probes, and
 * every frame above the base size) leave after the others in the same flush,
 * with IP_MTU_DISCOVER / IPV6_MTU_DISCOVER set to PMTUDISC_PROBE around their
 * sends only: the DF bit is set, nothing is fragmented locally (a datagram
 * larger than our own interface is refused with EMSGSIZE), and ICMP "too big"
 * news does not shrink the kernel's idea of the path (path MTU discovery is
 * ours, tunnel/path-mtu.ts). Everything else keeps the kernel's default
 * (fragmenting a base-size frame on a path narrower than the base, as before).
 * The IPv4 option is the one that applies to IPv4-mapped destinations of the
 * dual-stack socket; both are set.
 *
 * Dual stack: bound to `::`, one socket carries IPv4 and IPv6 (when the
 * kernel leaves IPV6_V6ONLY off; `dualStack` says whether it did). IPv4
 * senders then arrive as IPv4-mapped addresses (::ffff:a.b.c.d); they are
 * handed on as plain dotted IPv4, so rate limits, cookies and endpoints see
 * exactly what they see on an IPv4 socket. `send` accepts a bracketed IPv6
 * host ("[2001:db8::1]", as endpoints spell it).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

export interface UdpSocketOptions {
  hostname: string;
  port: number;
  /** Requested SO_RCVBUF/SO_SNDBUF in bytes (the kernel may cap it). */
  bufferBytes?: number;
  /** Use UDP generic segmentation offload when the kernel has it (default true). */
  gso?: boolean;
  onDatagram(data: Uint8Array, fromAddress: string, fromPort: number): void;
}

const SOL_SOCKET = 1;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
/** The kernel's limits for one GSO send: 64 segments, and a 64 KiB UDP payload. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65_000;
/** Shorter runs are not worth two setsockopt calls and a copy. */
const GSO_MIN_RUN = 4;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
/** Datagrams refused mid-batch that are skipped (and the rest sent) before the rest is dropped. */
const MAX_REFUSED_PER_BATCH = 8;
const IPPROTO_IP = 0;
const IP_MTU_DISCOVER = 10;
const IP_PMTUDISC_PROBE = 3;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const IPV6_MTU_DISCOVER = 23;
const IPV6_PMTUDISC_PROBE = 3;

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

function setSegmentSize(fd: number, size: number): boolean {
  const c = loadLibc();
  if (!c) return false;
  return c.setsockopt(fd, SOL_UDP, UDP_SEGMENT, ptr(new Int32Array([size])), 4) === 0;
}

function getIntOption(fd: number, level: number, name: number): number | null {
  const c = loadLibc();
  if (!c || fd < 0) return null;
  const out = new Int32Array(1);
  const len = new Uint32Array([4]);
  return c.getsockopt(fd, level, name, ptr(out), ptr(len)) === 0 ? out[0]! : null;
}

function setIntOption(fd: number, level: number, name: number, value: number): boolean {
  const c = loadLibc();
  if (!c || fd < 0) return false;
  return c.setsockopt(fd, level, name, ptr(new Int32Array([value])), 4) === 0;
}

/** The socket's path MTU discovery modes (IPv4, IPv6) as the kernel set them, or null where unknown. */
interface PmtuModes {
  readonly v4: number | null;
  readonly v6: number | null;
}

/** Does this socket (bound to `::`) also carry IPv4? (IPV6_V6ONLY read back as 0.) */
function isDualStack(fd: number): boolean {
  const c = loadLibc();
  if (!c || fd < 0) return false;
  const out = new Int32Array([1]);
  const len = new Uint32Array([4]);
  return c.getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, ptr(out), ptr(len)) === 0 && out[0] === 0;
}

/** "::ffff:a.b.c.d" as "a.b.c.d"; anything else unchanged. */
export function unmapAddress(address: string): string {
  return address.charCodeAt(0) === 58 /* ":" */ && address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
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
  /** Frames to send with don't-fragment, same layout as `queue`. */
  private dfQueue: (Uint8Array | number | string)[] = [];
  /** The socket's own PMTU discovery modes, restored after each don't-fragment batch; null: DF unavailable. */
  private pmtuModes: PmtuModes | null = null;
  /** Don't-fragment frames sent, and those the local stack refused (EMSGSIZE and the like). */
  dfDatagrams = 0;
  dfRefused = 0;
  /** Told about each refused don't-fragment frame (its size and destination). */
  onDontFragmentRefused: ((frame: Uint8Array, address: string, port: number) => void) | null = null;
  private flushScheduled = false;
  private closed = false;
  sentDatagrams = 0;
  receivedDatagrams = 0;
  sendErrors = 0;
  /** Datagrams that left through GSO sends, and the number of those sends. */
  gsoDatagrams = 0;
  gsoSends = 0;
  private gso: boolean;
  /** Bound to `::` with IPV6_V6ONLY off: IPv4 and IPv6 on this one socket. */
  dualStack = false;

  private constructor(
    private readonly socket: Bun.udp.Socket<"uint8array">,
    private readonly fd: number,
    readonly receiveBufferBytes: number,
    readonly sendBufferBytes: number,
    gso: boolean,
  ) {
    this.gso = gso;
  }

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
          options.onDatagram(data, self.dualStack ? unmapAddress(address) : address, port);
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
    // GSO is probed once: setting and clearing UDP_SEGMENT must both work.
    const gso = options.gso !== false && fd >= 0 && setSegmentSize(fd, 1300) && setSegmentSize(fd, 0);
    const created = new UdpSocket(socket, fd, rcv, snd, gso);
    created.dualStack = options.hostname === "::" && isDualStack(fd);
    const v4 = getIntOption(fd, IPPROTO_IP, IP_MTU_DISCOVER);
    const v6 = getIntOption(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER);
    if (v4 !== null || v6 !== null) created.pmtuModes = { v4, v6 };
    self = created;
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
  send(data: Uint8Array, address: string, port: number, dontFragment = false): void {
    if (this.closed) return;
    if (address.charCodeAt(0) === 91 /* "[" */) address = address.slice(1, -1);
    if (dontFragment && this.pmtuModes !== null) this.dfQueue.push(data, port, address);
    else this.queue.push(data, port, address);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends everything queued now, in order. */
  flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    if (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      this.sendQueued(batch);
    }
    if (this.dfQueue.length > 0) {
      const batch = this.dfQueue;
      this.dfQueue = [];
      this.sendDontFragment(batch);
    }
  }

  /** Don't-fragment frames: PMTUDISC_PROBE for their sends only, then the socket's own mode again. */
  private sendDontFragment(batch: (Uint8Array | number | string)[]): void {
    const modes = this.pmtuModes!;
    const v4 = modes.v4 !== null && setIntOption(this.fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE);
    const v6 = modes.v6 !== null && setIntOption(this.fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE);
    try {
      if (!v4 && !v6) {
        // DF cannot be set: refuse rather than let a frame above the base be fragmented.
        for (let i = 0; i < batch.length; i += 3) this.refuseDontFragment(batch, i);
        return;
      }
      // Runs of equal frames (bulk at the path's size) still go with GSO: each segment carries
      // DF, and a size is only used once a probe of it left through our own link.
      const refused = this.dfRefused;
      this.sendQueued(batch, (part) => this.sendRefusable(part));
      this.dfDatagrams += batch.length / 3 - (this.dfRefused - refused);
    } finally {
      if (v4) setIntOption(this.fd, IPPROTO_IP, IP_MTU_DISCOVER, modes.v4!);
      if (v6) setIntOption(this.fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, modes.v6!);
    }
  }

  /**
   * sendmmsg stops at a refused frame: EMSGSIZE (larger than our own interface), or an
   * earlier ICMP error of another destination reported on this send. The frame is tried
   * once more; refused twice, it is reported and the rest goes on.
   */
  private sendRefusable(batch: (Uint8Array | number | string)[]): void {
    let part = batch;
    let retry = true;
    while (part.length > 0) {
      let n = 0;
      try {
        const sent = this.socket.sendMany(part as any);
        n = typeof sent === "number" ? sent : part.length / 3;
      } catch {
        n = 0;
      }
      this.sentDatagrams += n;
      if (n * 3 >= part.length) break;
      part = part.slice(n * 3); // part[0] is the refused frame
      if (n > 0) retry = true;
      if (retry) {
        retry = false;
        continue;
      }
      this.refuseDontFragment(part, 0);
      part = part.slice(3);
      retry = true;
    }
  }

  private refuseDontFragment(batch: (Uint8Array | number | string)[], i: number): void {
    this.sendErrors++;
    this.dfRefused++;
    this.onDontFragmentRefused?.(batch[i] as Uint8Array, batch[i + 2] as string, batch[i + 1] as number);
  }

  private sendQueued(batch: (Uint8Array | number | string)[], singles: (part: (Uint8Array | number | string)[]) => void = (part) => this.sendBatch(part)): void {
    if (!this.gso) return singles(batch);
    // Split the queue into runs for GSO and the rest for sendmmsg, keeping the order.
    let rest: (Uint8Array | number | string)[] = [];
    let i = 0;
    while (i < batch.length) {
      const run = this.runLength(batch, i);
      if (run >= GSO_MIN_RUN) {
        if (rest.length > 0) {
          singles(rest);
          rest = [];
        }
        this.sendSegmented(batch, i, run);
        i += run * 3;
      } else {
        rest.push(batch[i]!, batch[i + 1]!, batch[i + 2]!);
        i += 3;
      }
    }
    if (rest.length > 0) singles(rest);
  }

  /** How many frames from `start` share one endpoint and one size (the last may be shorter). */
  private runLength(batch: (Uint8Array | number | string)[], start: number): number {
    const size = (batch[start] as Uint8Array).length;
    const port = batch[start + 1];
    const address = batch[start + 2];
    let n = 1;
    let bytes = size;
    for (let j = start + 3; j < batch.length && n < GSO_MAX_SEGMENTS; j += 3) {
      const len = (batch[j] as Uint8Array).length;
      if (batch[j + 1] !== port || batch[j + 2] !== address || len > size || bytes + len > GSO_MAX_BYTES) break;
      n++;
      bytes += len;
      if (len < size) break; // a shorter datagram can only end a run
    }
    return n;
  }

  private sendSegmented(batch: (Uint8Array | number | string)[], start: number, count: number): void {
    const size = (batch[start] as Uint8Array).length;
    let total = 0;
    for (let k = 0; k < count; k++) total += (batch[start + 3 * k] as Uint8Array).length;
    const buffer = new Uint8Array(total);
    let at = 0;
    for (let k = 0; k < count; k++) {
      const frame = batch[start + 3 * k] as Uint8Array;
      buffer.set(frame, at);
      at += frame.length;
    }
    const port = batch[start + 1] as number;
    const address = batch[start + 2] as string;
    if (!setSegmentSize(this.fd, size)) {
      this.gso = false;
      return this.sendBatch(batch.slice(start, start + 3 * count));
    }
    try {
      if (this.socket.send(buffer, port, address)) {
        this.sentDatagrams += count;
        this.gsoDatagrams += count;
        this.gsoSends++;
      } else {
        this.sendErrors += count;
      }
    } catch {
      this.sendErrors += count;
    } finally {
      if (!setSegmentSize(this.fd, 0)) this.gso = false;
    }
  }

  private sendBatch(batch: (Uint8Array | number | string)[]): void {
    // sendmmsg stops at the first datagram the kernel refuses (an address of the other family
    // on a single-stack socket, say): count that one and send the rest. A few times per batch:
    // a full socket buffer refuses everything, and that must not cost a syscall per datagram.
    let part = batch;
    for (let refused = 0; part.length > 0; refused++) {
      let sent: unknown;
      try {
        sent = this.socket.sendMany(part as any);
      } catch {
        // The first datagram was refused: send one by one so the others still go.
        return this.sendOneByOne(part);
      }
      const total = part.length / 3;
      const n = typeof sent === "number" ? sent : total;
      this.sentDatagrams += n;
      if (n >= total) return;
      if (refused >= MAX_REFUSED_PER_BATCH) {
        this.sendErrors += total - n;
        return;
      }
      this.sendErrors++;
      part = part.slice((n + 1) * 3);
    }
  }

  private sendOneByOne(batch: (Uint8Array | number | string)[]): void {
    for (let i = 0; i < batch.length; i += 3) {
      try {
        if (this.socket.send(batch[i] as Uint8Array, batch[i + 1] as number, batch[i + 2] as string)) this.sentDatagrams++;
      } catch {
        this.sendErrors++;
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
