/**
 * Webhooks: every local event POSTed as JSON to the URL the user configured
 * (`pilot config --set webhook=URL`), signed, retried, never in the daemon's
 * way. docs/SERVICES.md "Webhooks" is the receiver's side of this.
 *
 *   body      {"id","node","seq","time","type","data"}   (id: "<boot>-<seq>", the same on every retry)
 *   headers   X-Pilot-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *             X-Pilot-Timestamp, X-Pilot-Event (the type), X-Pilot-Delivery (the id),
 *             X-Pilot-Attempt (1, 2, ...), Content-Type: application/json
 *
 * One POST at a time, in seq order. A 2xx is delivered. A network error, a
 * timeout (10 s), 408, 429 or 5xx is retried after 1 s, 2 s, 4 s, ... (at
 * most 60 s, with jitter), 8 attempts in all; any other status (3xx: redirects
 * are not followed; 4xx) is final. Then the next event. Events wait in a
 * bounded queue (1000 events, 8 MiB): when it is full the oldest is dropped
 * and counted. Publishing an event only appends to that queue: the daemon
 * never waits for the receiver.
 *
 * The request goes wherever the URL points, with the event in it: point it
 * only at a receiver you trust (https for anything off this host).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { eventJson, type LocalEvent } from "../shared/events.ts";
import { signatureHeader, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../shared/webhook-signature.ts";
import { writeFileAtomic } from "../util/atomic-file.ts";
import type { Logger } from "../util/log.ts";

export const WEBHOOK_SECRET_FILE = "webhook_secret";
const MAX_URL_LENGTH = 2048;

export interface WebhookOptions {
  /** An http(s) URL (checkWebhookUrl). */
  readonly url: string;
  /** The HMAC key (its UTF-8 bytes). */
  readonly secret: string;
  /** This node's address, in every body. */
  readonly node: string;
  /** The daemon run's id: delivery ids are `<boot>-<seq>`. */
  readonly boot: string;
  readonly log: Logger;
  readonly userAgent?: string;
  /** Events waiting at most (default 1000), and their bytes (default 8 MiB). */
  readonly queueLimit?: number;
  readonly queueBytes?: number;
  /** Each POST's time limit (default 10 s). */
  readonly timeoutMs?: number;
  /** POSTs per event at most (default 8). */
  readonly maxAttempts?: number;
  /** First retry delay (default 1 s), doubling up to `maxBackoffMs` (default 60 s). */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly clock?: () => number;
}

export interface WebhookStats {
  /** The URL without any user:password. */
  readonly url: string;
  readonly queued: number;
  readonly queued_bytes: number;
  readonly delivered: number;
  /** Events given up on (out of attempts, or a final status). */
  readonly failed: number;
  /** Events dropped unsent because the queue was full. */
  readonly dropped: number;
  /** POSTs that were retries. */
  readonly retries: number;
  readonly in_flight: boolean;
  readonly last_status: number | null;
  readonly last_error: string | null;
  /** ISO time of the last 2xx. */
  readonly last_delivered_at: string | null;
}

interface Item {
  readonly id: string;
  readonly type: string;
  readonly body: string;
  readonly bytes: number;
  attempts: number;
}

/** Checks a webhook URL: http or https, with a host, at most 2048 characters. */
export function checkWebhookUrl(text: string): { ok: true; url: string } | { ok: false; message: string } {
  if (text.length > MAX_URL_LENGTH) return { ok: false, message: `the webhook URL is longer than ${MAX_URL_LENGTH} characters` };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, message: `"${text}" is not a URL` };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return { ok: false, message: `the webhook URL must be http:// or https://, not ${url.protocol}//` };
  if (url.hostname === "") return { ok: false, message: "the webhook URL has no host" };
  return { ok: true, url: url.toString() };
}

/** The URL as logs and status show it: any user:password replaced. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.username || url.password) {
      url.username = "***";
      url.password = "";
    }
    return url.toString();
  } catch {
    return "(invalid URL)";
  }
}

/**
 * The signing secret: the configured one, else `$PILOT_HOME/webhook_secret`,
 * created (0600, 32 random bytes as hex) if it does not exist.
 */
export function webhookSecret(home: string, configured?: string): { secret: string; file: string | null; created: boolean } {
  if (configured !== undefined && configured !== "") return { secret: configured, file: null, created: false };
  const file = join(home, WEBHOOK_SECRET_FILE);
  if (existsSync(file)) {
    const secret = readFileSync(file, "utf8").trim();
    if (secret !== "") return { secret, file, created: false };
  }
  const secret = randomBytes(32).toString("hex");
  writeFileAtomic(file, secret + "\n", 0o600);
  return { secret, file, created: true };
}

/** True if a secret file others could read (group or world bits set). */
export function secretFileIsOpen(file: string): boolean {
  try {
    return (statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}

export class WebhookSender {
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private inFlight: Item | null = null;
  private abort: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private delivered = 0;
  private failed = 0;
  private dropped = 0;
  private retries = 0;
  private lastStatus: number | null = null;
  private lastError: string | null = null;
  private lastDeliveredAt: number | null = null;
  /** Trouble is logged once per episode (first failure, first drop), and its end once. */
  private failing = false;
  private dropping = false;
  private readonly limit: number;
  private readonly limitBytes: number;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly clock: () => number;
  private readonly shownUrl: string;

  constructor(private readonly options: WebhookOptions) {
    this.limit = options.queueLimit ?? 1000;
    this.limitBytes = options.queueBytes ?? 8 * 1024 * 1024;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.backoffMs = options.backoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.clock = options.clock ?? Date.now;
    this.shownUrl = redactUrl(options.url);
  }

  /** Queues one event; returns at once. */
  enqueue(event: LocalEvent): void {
    if (this.stopped) return;
    const id = `${this.options.boot}-${event.seq}`;
    const body = eventJson(event, { id, node: this.options.node });
    const bytes = Buffer.byteLength(body);
    this.queue.push({ id, type: event.type, body, bytes, attempts: 0 });
    this.queuedBytes += bytes;
    while (this.queue.length > this.limit || this.queuedBytes > this.limitBytes) {
      const old = this.queue.shift()!;
      this.queuedBytes -= old.bytes;
      this.dropped++;
      if (!this.dropping) {
        this.dropping = true;
        this.options.log.warn("webhook queue full: dropping the oldest events", { url: this.shownUrl, limit: this.limit });
      }
    }
    this.next();
  }

  stats(): WebhookStats {
    return {
      url: this.shownUrl,
      queued: this.queue.length,
      queued_bytes: this.queuedBytes,
      delivered: this.delivered,
      failed: this.failed,
      dropped: this.dropped,
      retries: this.retries,
      in_flight: this.inFlight !== null && this.abort !== null,
      last_status: this.lastStatus,
      last_error: this.lastError,
      last_delivered_at: this.lastDeliveredAt === null ? null : new Date(this.lastDeliveredAt).toISOString(),
    };
  }

  /** Stops at once: the POST in flight is aborted, what is queued is not sent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    const left = this.queue.length + (this.inFlight ? 1 : 0);
    if (left > 0) this.options.log.info("webhook stopped with events unsent", { url: this.shownUrl, unsent: left });
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private next(): void {
    if (this.stopped || this.inFlight || this.queue.length === 0) return;
    const item = this.queue.shift()!;
    this.queuedBytes -= item.bytes;
    this.inFlight = item;
    void this.attempt(item);
  }

  private async attempt(item: Item): Promise<void> {
    item.attempts++;
    if (item.attempts > 1) this.retries++;
    const timestamp = Math.floor(this.clock() / 1000);
    const abort = new AbortController();
    this.abort = abort;
    const timer = setTimeout(() => abort.abort(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    let outcome: "delivered" | "retry" | "final";
    try {
      const response = await fetch(this.options.url, {
        method: "POST",
        body: item.body,
        redirect: "manual",
        signal: abort.signal,
        headers: {
          "Content-Type": "application/json",
          "User-Agent": this.options.userAgent ?? "pilot-webhook",
          [SIGNATURE_HEADER]: signatureHeader(this.options.secret, timestamp, item.body),
          [TIMESTAMP_HEADER]: String(timestamp),
          "X-Pilot-Event": item.type,
          "X-Pilot-Delivery": item.id,
          "X-Pilot-Attempt": String(item.attempts),
        },
      });
      this.lastStatus = response.status;
      void response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) outcome = "delivered";
      else {
        this.lastError = response.status >= 300 && response.status < 400 ? `HTTP ${response.status} (redirects are not followed)` : `HTTP ${response.status}`;
        outcome = response.status === 408 || response.status === 429 || response.status >= 500 ? "retry" : "final";
      }
    } catch (e) {
      if (this.stopped) return;
      const reason = abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason.message : (e as Error).message;
      this.lastError = reason;
      this.lastStatus = null;
      outcome = "retry";
    } finally {
      clearTimeout(timer);
      if (this.abort === abort) this.abort = null;
    }
    if (this.stopped) return;
    if (outcome === "retry" && item.attempts < this.maxAttempts) {
      if (!this.failing) {
        this.failing = true;
        this.options.log.warn("webhook POST failed; retrying with backoff", { url: this.shownUrl, error: this.lastError, event: item.id });
      }
      const base = Math.min(this.backoffMs * 2 ** (item.attempts - 1), this.maxBackoffMs);
      const delay = base * (0.8 + 0.4 * Math.random());
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.attempt(item);
      }, delay);
      this.timer.unref?.();
      return;
    }
    if (outcome === "delivered") {
      this.delivered++;
      this.lastDeliveredAt = this.clock();
      if (this.failing) this.options.log.info("webhook delivering again", { url: this.shownUrl });
      this.failing = false;
      if (this.queue.length < this.limit / 2) this.dropping = false;
    } else {
      this.failed++;
      this.options.log.warn("webhook gave up on an event", { url: this.shownUrl, event: item.id, attempts: item.attempts, error: this.lastError });
    }
    this.inFlight = null;
    this.next();
  }
}
