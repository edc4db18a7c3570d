/**
 * One stream of the task protocol (port 1003) between this node and a peer,
 * whichever side dialed it. Both ends may send requests on it; each direction
 * is stop-and-wait: one request, its reply, the next. A request that
 * announces a payload gets `ready` first, then the payload follows as DATA
 * frames (with backpressure: no more than the framing's high-water mark is
 * queued), then the final reply.
 *
 *   link.request(message, payload?)  -> Promise<ReplyMessage>   (rejects if the stream ends first)
 *   handler.onRequest(link, message) -> { reply } | { accept: sink }
 *
 * Violations (a frame that does not decode, DATA nobody asked for, a second
 * request before our reply, a reply nobody waits for) abort the stream and
 * are counted; nothing a peer sends throws out of here.
 */
import type { Address } from "../../../protocol/address.ts";
import {
  decodeTaskMessage,
  encodeTaskMessage,
  ReplyCode,
  TASK_LIMITS,
  TASK_MAX_FRAME,
  type ReplyCodeValue,
  type ReplyMessage,
  type ResultMessage,
  type SubmitMessage,
  type TaskMessage,
  type TaskState,
  type UpdateMessage,
  type VerdictMessage,
} from "../../../protocol/tasks.ts";
import { NodeError, type StreamHandle } from "../../local-node.ts";
import { FramedStream } from "../framed-stream.ts";

export type TaskRequest = SubmitMessage | UpdateMessage | ResultMessage | VerdictMessage;

/** Where an accepted payload goes. `finish` runs once every announced byte arrived. */
export interface PayloadSink {
  readonly size: number;
  write(chunk: Uint8Array): void;
  finish(): Promise<ReplyMessage> | ReplyMessage;
  /** The stream ended before the payload did. */
  abort(): void;
}

export type RequestDecision = { readonly reply: ReplyMessage } | { readonly accept: PayloadSink };

export interface LinkHandler {
  onRequest(link: TaskLink, request: TaskRequest): Promise<RequestDecision>;
  onClosed(link: TaskLink): void;
  onViolation(link: TaskLink, reason: string): void;
}

/** Reads a payload chunk by chunk (`TASK_LIMITS.chunk` at most each). */
export type PayloadSource = (offset: number, length: number) => Uint8Array;

export function reply(code: ReplyCodeValue, state: TaskState | null = null, message = ""): ReplyMessage {
  return { type: "reply", code, state, message };
}

export class TaskLink {
  private readonly framed: FramedStream;
  private waiter: { resolve: (r: ReplyMessage) => void; reject: (e: Error) => void } | null = null;
  private drainWaiter: (() => void) | null = null;
  /** The peer's request in progress: deciding (our handler runs), or receiving its payload. */
  private incoming: "idle" | "deciding" | "receiving" | "finishing" = "idle";
  private sink: PayloadSink | null = null;
  private received = 0;
  private closed = false;
  private peerEnded = false;
  /** A stream from a node with no business here: answer its first request (a refusal, as a rule), then end. */
  private endAfterReply = false;
  lastActivity: number;
  /** Requests we sent that are not answered yet (0 or 1). */
  private outgoing = 0;

  constructor(
    stream: StreamHandle,
    readonly peer: Address,
    readonly origin: "dialed" | "accepted",
    private readonly handler: LinkHandler,
    private readonly now: () => number,
  ) {
    this.lastActivity = now();
    this.framed = new FramedStream(stream, {
      maxFrame: TASK_MAX_FRAME,
      onFrame: (body) => this.onFrame(body),
      onEnd: () => {
        // The peer has nothing more to ask; answer what it asked, then end our side too.
        this.peerEnded = true;
        if (this.incoming === "receiving") return this.abort("the stream ended in the middle of a payload");
        if (this.incoming === "idle") this.framed.end();
      },
      onClose: () => this.onClose(),
      onViolation: (reason) => this.handler.onViolation(this, reason),
    });
    this.framed.onDrain = () => {
      const w = this.drainWaiter;
      this.drainWaiter = null;
      w?.();
    };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Nothing in flight either way. */
  get idle(): boolean {
    return this.outgoing === 0 && this.incoming === "idle";
  }

  /** Something is in flight and nothing moved for `ms`: the peer stopped answering or sending. */
  stalled(now: number, ms: number): boolean {
    return !this.idle && !this.closed && now - this.lastActivity >= ms;
  }

  /** Sends one request and waits for its final reply; a payload goes after a `ready`. */
  async request(message: TaskRequest, payload?: { size: number; read: PayloadSource }): Promise<ReplyMessage> {
    if (this.closed) throw new NodeError("closed", "the task stream is closed");
    if (this.outgoing > 0) throw new Error("one request at a time per link");
    this.outgoing++;
    try {
      let answer = await this.send(message);
      if (answer.code !== ReplyCode.Ready) return answer;
      if (!payload || payload.size === 0) {
        this.abort("the peer asked for a payload that was never announced");
        throw new NodeError("closed", "the peer broke the task protocol");
      }
      const final = this.expectReply();
      try {
        for (let offset = 0; offset < payload.size; ) {
          const chunk = payload.read(offset, Math.min(TASK_LIMITS.chunk, payload.size - offset));
          if (chunk.length === 0) throw new Error("the stored payload is shorter than announced");
          offset += chunk.length;
          if (!this.write({ type: "data", bytes: chunk })) await this.drained();
          if (this.closed) break;
        }
      } catch (e) {
        // The peer waits for bytes we cannot give: end the stream rather than leave it hanging.
        final.catch(() => {});
        this.framed.abort();
        throw e;
      }
      answer = await final;
      return answer;
    } finally {
      this.outgoing--;
    }
  }

  /** This stream serves one request only (the node has no business here): it ends after the reply. */
  markShortLived(): void {
    this.endAfterReply = true;
  }

  get shortLived(): boolean {
    return this.endAfterReply;
  }

  /** Half-closes once everything queued is written. */
  end(): void {
    this.framed.end();
  }

  abort(reason: string): void {
    if (this.closed) return;
    this.handler.onViolation(this, reason);
    this.framed.abort();
  }

  close(): void {
    this.framed.close();
  }

  private send(message: TaskMessage): Promise<ReplyMessage> {
    const answer = this.expectReply();
    this.write(message);
    return answer;
  }

  private expectReply(): Promise<ReplyMessage> {
    return new Promise<ReplyMessage>((resolve, reject) => {
      if (this.closed) return reject(new NodeError("closed", "the task stream closed"));
      this.waiter = { resolve, reject };
    });
  }

  private write(message: TaskMessage): boolean {
    this.lastActivity = this.now();
    return this.framed.send(encodeTaskMessage(message));
  }

  private drained(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiter = resolve));
  }

  private onFrame(body: Uint8Array): void {
    this.lastActivity = this.now();
    const decoded = decodeTaskMessage(body);
    if (!decoded.ok) return this.abort(`undecodable frame: ${decoded.error.code}`);
    const m = decoded.value;
    switch (m.type) {
      case "reply": {
        const w = this.waiter;
        if (!w) return this.abort("a reply to no request");
        this.waiter = null;
        w.resolve(m);
        return;
      }
      case "data": {
        if (this.incoming !== "receiving" || !this.sink) return this.abort("data outside a payload");
        if (this.received + m.bytes.length > this.sink.size) return this.abort("more data than announced");
        this.received += m.bytes.length;
        try {
          this.sink.write(m.bytes);
        } catch (e) {
          this.sink.abort();
          this.sink = null;
          this.incoming = "idle";
          return this.abort(`could not store the payload: ${(e as Error).message}`);
        }
        if (this.received === this.sink.size) void this.finishPayload();
        return;
      }
      default: {
        if (this.incoming !== "idle") return this.abort("a request before the previous one was answered");
        this.incoming = "deciding";
        void this.decide(m);
      }
    }
  }

  private async decide(request: TaskRequest): Promise<void> {
    let decision: RequestDecision;
    try {
      decision = await this.handler.onRequest(this, request);
    } catch (e) {
      decision = { reply: reply(ReplyCode.Busy, null, `the worker failed to take it: ${(e as Error).message}`.slice(0, 200)) };
    }
    if (this.closed) {
      if ("accept" in decision) decision.accept.abort();
      return;
    }
    if ("reply" in decision) {
      this.incoming = "idle";
      this.write(decision.reply);
      if (this.peerEnded || this.endAfterReply) this.framed.end();
      return;
    }
    this.sink = decision.accept;
    this.received = 0;
    this.incoming = "receiving";
    this.write(reply(ReplyCode.Ready));
  }

  private async finishPayload(): Promise<void> {
    const sink = this.sink!;
    this.incoming = "finishing";
    let answer: ReplyMessage;
    try {
      answer = await sink.finish();
    } catch (e) {
      sink.abort();
      answer = reply(ReplyCode.Busy, null, `could not store it: ${(e as Error).message}`.slice(0, 200));
    }
    this.sink = null;
    this.incoming = "idle";
    if (!this.closed) this.write(answer);
    if (this.peerEnded || this.endAfterReply) this.framed.end();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sink && this.incoming === "receiving") this.sink.abort();
    this.sink = null;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new NodeError("closed", "the task stream closed before the peer answered"));
    const d = this.drainWaiter;
    this.drainWaiter = null;
    d?.();
    this.handler.onClosed(this);
  }
}
