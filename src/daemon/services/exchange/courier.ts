/**
 * Delivers the outbox: one courier per target with queued messages. It dials
 * the target's port 1001, sends the due messages one at a time and waits for
 * each acknowledgement (which the target sends only once the message is
 * committed). An acknowledged message is marked delivered; a refusal for good
 * (too large, over quota, not trusted, service off) marks it failed; anything
 * else (unreachable, reset, busy, no answer) is retried with backoff, across
 * daemon restarts, until the message's time to live runs out. The receiver
 * deduplicates by (sender, id), so a message whose ack was lost may be sent
 * again safely.
 */
import { formatAddress, parseAddress } from "../../../protocol/address.ts";
import { EXCHANGE_CHUNK, ExchangeError, idFromText, type ExchangeFrame } from "../../../protocol/exchange.ts";
import { WellKnownPort } from "../../../protocol/ports.ts";
import type { Logger } from "../../../util/log.ts";
import { NodeError } from "../../local-node.ts";
import type { ServiceContext } from "../service.ts";
import { ExchangeConnection } from "./connection.ts";
import type { MessageStore, OutboxRow } from "./message-store.ts";

/** Refusals that will not change by retrying: the message fails. */
const PERMANENT = new Set<string>([ExchangeError.TooLarge, ExchangeError.QuotaExceeded, ExchangeError.NotTrusted, ExchangeError.ServiceDisabled, ExchangeError.InvalidMessage, ExchangeError.BadFrame]);

export interface CourierTimers {
  readonly dialMs: number;
  readonly ackMs: number;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
}

export const DEFAULT_COURIER_TIMERS: CourierTimers = { dialMs: 10_000, ackMs: 30_000, backoffMinMs: 1_000, backoffMaxMs: 60_000 };

export type Settlement = { state: "delivered" } | { state: "failed"; error: { code: string; message: string } } | { state: "retrying"; error: { code: string; message: string } };

/** First bytes of data in a message frame, so header + data fit EXCHANGE_MAX_FRAME. */
const FIRST_CHUNK = EXCHANGE_CHUNK;

export class Couriers {
  timers: CourierTimers = DEFAULT_COURIER_TIMERS;
  private readonly running = new Map<string, { timer: ReturnType<typeof setTimeout> | null; busy: boolean; again: boolean }>();
  private stopped = false;

  constructor(
    private readonly context: ServiceContext,
    private readonly store: MessageStore,
    private readonly log: Logger,
    /** Told about each attempt's outcome for each message. */
    private readonly onSettled: (id: string, outcome: Settlement) => void,
  ) {}

  /** Starts (or hurries) delivery to `target`. */
  kick(target: string): void {
    if (this.stopped) return;
    let c = this.running.get(target);
    if (!c) this.running.set(target, (c = { timer: null, busy: false, again: false }));
    if (c.timer) {
      clearTimeout(c.timer);
      c.timer = null;
    }
    if (c.busy) {
      c.again = true;
      return;
    }
    void this.run(target);
  }

  /** Starts a courier for every target with queued messages (at start-up). */
  kickAll(): void {
    for (const target of this.store.queuedTargets()) this.kick(target);
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.running.values()) if (c.timer) clearTimeout(c.timer);
    this.running.clear();
  }

  private async run(target: string): Promise<void> {
    const c = this.running.get(target);
    if (!c || this.stopped) return;
    c.busy = true;
    try {
      do {
        c.again = false;
        await this.deliverDue(target);
      } while (c.again && !this.stopped);
    } catch (e) {
      this.log.warn("message delivery failed unexpectedly", { target, error: (e as Error).message });
    } finally {
      c.busy = false;
    }
    if (this.stopped) return;
    const next = this.store.nextDue(target);
    if (next === null) {
      this.running.delete(target);
      return;
    }
    c.timer = setTimeout(() => {
      c.timer = null;
      void this.run(target);
    }, Math.max(0, next - Date.now()));
    c.timer.unref?.();
  }

  private backoff(attempts: number): number {
    const base = Math.min(this.timers.backoffMaxMs, this.timers.backoffMinMs * 2 ** Math.min(attempts, 16));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  private retry(rows: readonly OutboxRow[], error: { code: string; message: string }): void {
    const now = Date.now();
    for (const row of rows) {
      this.store.attemptFailed(row.id, error, now + this.backoff(row.attempts));
      this.onSettled(row.id, { state: "retrying", error });
    }
  }

  private async deliverDue(target: string): Promise<void> {
    while (!this.stopped) {
      const rows = this.store.due(target, Date.now(), 32);
      if (rows.length === 0) return;
      const address = parseAddress(target);
      if (!address.ok) {
        for (const r of rows) this.settle(r.id, "failed", { code: "invalid_argument", message: `bad target ${target}` });
        continue;
      }
      let connection: ExchangeConnection;
      try {
        const stream = await this.context.dial(address.value, WellKnownPort.DataExchange, { timeoutMs: this.timers.dialMs });
        connection = new ExchangeConnection(stream);
      } catch (e) {
        const err = e instanceof NodeError ? e : new NodeError("internal", String(e));
        // Nothing listens on 1001 at all: both services off there (or it is starting); retried a few times, then failed.
        if (err.code === "connection_refused" && rows.every((r) => r.attempts >= 4)) {
          for (const r of rows) this.settle(r.id, "failed", { code: ExchangeError.ServiceDisabled, message: `${formatAddress(address.value)} does not accept messages (nothing listens on port 1001)` });
          continue;
        }
        this.retry(rows, { code: err.code, message: err.message });
        return;
      }
      try {
        for (let i = 0; i < rows.length; i++) {
          const outcome = await this.deliverOne(connection, rows[i]!);
          if (outcome === "stream") {
            // The stream itself was refused (busy, not trusted, switched off): same answer for the rest.
            return;
          }
        }
      } catch (e) {
        const err = e instanceof NodeError ? e : new NodeError("internal", String(e));
        const left = rows.filter((r) => this.store.outboxEntry(r.id)?.state === "queued");
        this.retry(left, { code: err.code, message: err.message });
        return;
      } finally {
        connection.close();
      }
    }
  }

  /** Sends one message and settles it from the answer; "stream" when the answer refused the whole stream. */
  private async deliverOne(connection: ExchangeConnection, row: OutboxRow): Promise<"ok" | "stream"> {
    const id = idFromText(row.id)!;
    const data = this.store.outboxData(row.id);
    const first = data.subarray(0, FIRST_CHUNK);
    connection.send({ kind: "message", id, type: row.type, replyTo: row.reply_to ? idFromText(row.reply_to) : null, total: data.length, data: first });
    for (let at = first.length; at < data.length; at += EXCHANGE_CHUNK) {
      if (!connection.send({ kind: "message_more", data: data.subarray(at, at + EXCHANGE_CHUNK) })) await connection.drained();
      if (connection.isClosed) throw new NodeError("connection_reset", "the target closed the stream");
    }
    const answer: ExchangeFrame = await connection.receive(this.timers.ackMs);
    if (answer.kind === "message_ack" && Buffer.from(answer.id).equals(id)) {
      this.settle(row.id, "delivered");
      return "ok";
    }
    if (answer.kind === "error") {
      const error = { code: answer.code, message: answer.message };
      const aboutStream = answer.ref.every((b) => b === 0);
      if (PERMANENT.has(answer.code)) {
        if (aboutStream) {
          for (const r of this.store.due(row.target, Number.MAX_SAFE_INTEGER, 1_000_000)) this.settle(r.id, "failed", error);
          return "stream";
        }
        this.settle(row.id, "failed", error);
        return "ok";
      }
      if (aboutStream) {
        this.retry(this.store.due(row.target, Number.MAX_SAFE_INTEGER, 1_000_000), error);
        return "stream";
      }
      this.retry([row], error);
      return "ok";
    }
    throw new NodeError("internal", `unexpected answer ${answer.kind} to a message`);
  }

  private settle(id: string, state: "delivered" | "failed", error?: { code: string; message: string }): void {
    const now = Date.now();
    if (state === "delivered") {
      this.store.delivered(id, now);
      this.onSettled(id, { state });
    } else {
      this.store.failed(id, error!, now);
      this.onSettled(id, { state, error: error! });
      this.log.info("message refused for good", { id, code: error!.code, reason: error!.message });
    }
  }
}
