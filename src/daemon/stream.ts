/**
 * One stream connection inside the daemon: the sans-I/O engine plus the glue
 * that makes it a `StreamHandle` for the IPC server. Application calls go to
 * the engine and mark the stream dirty; the data plane pumps dirty streams at
 * the end of the turn (segments out, events to the owner, next deadline).
 * Events therefore never reach the owner from inside write/read, and are held
 * until the owner sets `onEvent`.
 */
import type { Address } from "../protocol/address.ts";
import type { StreamConnection, StreamEvent as EngineEvent, StreamError } from "../transport/connection.ts";
import { NodeError, type StreamEvent, type StreamHandle } from "./local-node.ts";

export interface StreamHost {
  /** Asks for `pump` at the end of this turn. */
  markDirty(stream: DaemonStream): void;
}

export type StreamOrigin = "dialed" | "accepted";

export class DaemonStream implements StreamHandle {
  private held: StreamEvent[] = [];
  private handler: ((event: StreamEvent) => void) | null = null;
  private endDelivered = false;
  private closedDelivered = false;
  /** The owner closed it: keep the engine running to finish the FIN exchange, discard what arrives. */
  private discarding = false;
  /** Set once established (dialed) or handed to the listener (accepted). */
  announced = false;
  /** Resolves a pending dial: called once with null (connected) or the error. */
  onSettled: ((error: NodeError | null) => void) | null = null;
  readonly openedAt: number;

  constructor(
    readonly id: number,
    readonly engine: StreamConnection,
    readonly localAddress: Address,
    readonly localPort: number,
    readonly remoteAddress: Address,
    readonly remotePort: number,
    readonly origin: StreamOrigin,
    private readonly host: StreamHost,
    now: number,
  ) {
    this.openedAt = now;
  }

  get onEvent(): ((event: StreamEvent) => void) | null {
    return this.handler;
  }

  set onEvent(handler: ((event: StreamEvent) => void) | null) {
    this.handler = handler;
    if (handler && this.held.length > 0) this.host.markDirty(this);
  }

  get isClosedForOwner(): boolean {
    return this.closedDelivered;
  }

  // ---- StreamHandle ------------------------------------------------------

  write(data: Uint8Array): number {
    if (this.discarding || this.closedDelivered) return 0;
    const n = this.engine.write(data);
    if (n > 0) this.host.markDirty(this);
    return n;
  }

  read(max: number): Uint8Array | null {
    if (this.closedDelivered || max <= 0) return null;
    const bytes = this.engine.read(max);
    this.host.markDirty(this); // a read may open the window (window update) or complete the end
    return bytes.length > 0 ? bytes : null;
  }

  shutdown(): void {
    this.engine.shutdown();
    this.host.markDirty(this);
  }

  close(): void {
    if (this.discarding) return;
    this.discarding = true;
    this.engine.shutdown();
    this.handler = null;
    this.held = [];
    this.closedDelivered = true;
    this.host.markDirty(this);
  }

  abort(): void {
    this.engine.abort();
    this.host.markDirty(this);
  }

  setNoDelay(noDelay: boolean): void {
    this.engine.setNoDelay(noDelay);
    this.host.markDirty(this);
  }

  // ---- driven by the data plane -----------------------------------------

  private timeoutsSeen = 0;

  /** True when the engine's retransmission timer fired since the last call (the peer went quiet). */
  noteRetransmissionTimeout(): boolean {
    const n = this.engine.stats().timeouts;
    if (n === this.timeoutsSeen) return false;
    this.timeoutsSeen = n;
    return true;
  }

  /** Ends the stream with an error that did not come from the engine (untrust, shutdown). */
  fail(error: NodeError): void {
    this.engine.abort();
    this.deliverClosed(error);
    this.host.markDirty(this);
  }

  /** Maps the engine's events to the owner's, after the data plane drained segments. */
  processEngineEvents(): void {
    let ev: EngineEvent | undefined;
    while ((ev = this.engine.pollEvent()) !== undefined) {
      switch (ev.type) {
        case "connected":
          this.settle(null);
          break;
        case "readable":
          if (!this.discarding) this.queue({ type: "readable" });
          break;
        case "writable":
          this.queue({ type: "writable" });
          break;
        case "finished":
          break; // "end" is delivered once every byte before the FIN has been read (below)
        case "closed":
          this.settle(ev.error ? toNodeError(ev.error) : new NodeError("closed", "the connection closed before it was established"));
          this.deliverClosed(ev.error ? toNodeError(ev.error) : undefined);
          break;
      }
    }
    if (this.discarding) {
      // Keep the window open so the peer's FIN (and anything before it) gets through.
      while (this.engine.read(1 << 20).length > 0);
    }
    if (!this.endDelivered && this.engine.peerFinished && this.engine.readableBytes === 0) {
      this.endDelivered = true;
      if (!this.discarding) this.queue({ type: "end" });
    }
    // Both directions done (our FIN acknowledged, theirs received): finished for the owner,
    // even though the engine lingers in TIME-WAIT to absorb retransmissions.
    // (Only once the owner has read everything before the peer's FIN: a reply that arrived
    // with that FIN must not be lost behind an early "closed".)
    if (this.engine.state === "time-wait" && (this.endDelivered || this.discarding)) this.deliverClosed(undefined);
  }

  /** Hands held events to the owner. Called at the end of a turn only. */
  deliverEvents(): void {
    const handler = this.handler;
    if (!handler || this.held.length === 0) return;
    const events = this.held;
    this.held = [];
    for (const e of events) {
      try {
        handler(e);
      } catch {
        // An owner's bug must not break the data plane.
      }
    }
  }

  private settle(error: NodeError | null): void {
    const settle = this.onSettled;
    if (!settle) return;
    this.onSettled = null;
    settle(error);
  }

  private deliverClosed(error: NodeError | undefined): void {
    if (this.closedDelivered) return;
    this.closedDelivered = true;
    // The owner can read nothing more: what is still buffered goes back to the budget.
    this.engine.discardUnread();
    this.queue(error ? { type: "closed", error } : { type: "closed" });
  }

  private queue(event: StreamEvent): void {
    if (this.held.length > 0) {
      const last = this.held[this.held.length - 1]!;
      if ((event.type === "readable" || event.type === "writable") && last.type === event.type) return;
    }
    this.held.push(event);
  }
}

export function toNodeError(error: StreamError): NodeError {
  switch (error.code) {
    case "refused":
      return new NodeError("connection_refused", "connection refused: nothing is listening on that port", "check the port, or that the service on the remote agent is running");
    case "limited":
      return new NodeError("limit_exceeded", error.message, "the remote agent limits how many connections one peer may open at once: close some, or retry in a moment");
    case "reset":
      return new NodeError("connection_reset", error.message);
    case "timeout":
      return new NodeError("timeout", error.message);
    case "aborted":
      return new NodeError("connection_reset", "the connection was reset on this node (pilot disconnect, or the daemon closed it)");
  }
}
