/**
 * The registry's wire format, shared by server and client. Pure: no sockets.
 *
 * Frames, both directions: [u32 big-endian length][UTF-8 JSON object],
 * 1 <= length <= MAX_FRAME (64 KiB). The length is checked before anything is
 * buffered for the body, so a hostile length costs nothing.
 *
 * Signatures (Ed25519), each over a context line so that no signature is ever
 * valid in another role:
 *   request   "pilot-registry-request-v1\n"  ‖ registry public key (32 B) ‖ canonical(request without sig)
 *   response  "pilot-registry-response-v1\n" ‖ request nonce (16 B, or empty) ‖ canonical(response without sig)
 *   event     "pilot-registry-event-v1\n"    ‖ subscribe request nonce (16 B) ‖ canonical(event without sig)
 *
 * canonical(x): JSON with object keys sorted (by UTF-16 code units), no
 * whitespace; only null, booleans, safe integers, strings, arrays and plain
 * objects are allowed, so both sides produce the same bytes.
 */
import { concatBytes } from "../crypto/bytes.ts";

export const PROTOCOL_VERSION = 1;
export const MAX_FRAME = 64 * 1024;
export const FRAME_HEADER = 4;
export const NONCE_SIZE = 16;
/** A request's ts must be within this of the server's clock; a nonce is remembered for as long. */
export const REQUEST_WINDOW_MS = 60_000;

export const REQUEST_CONTEXT = "pilot-registry-request-v1\n";
export const RESPONSE_CONTEXT = "pilot-registry-response-v1\n";
export const EVENT_CONTEXT = "pilot-registry-event-v1\n";

/** Error codes the registry sends. */
export const RegistryErrorCode = {
  NotFound: "not_found",
  AlreadyExists: "already_exists",
  Unauthorized: "unauthorized",
  RateLimited: "rate_limited",
  InvalidArgument: "invalid_argument",
  StaleRequest: "stale_request",
  ReplayedRequest: "replayed_request",
  /** A new key must show proof of work (pow.ts); the error carries `pow: {challenge, difficulty}`. */
  PowRequired: "pow_required",
  Internal: "internal",
} as const;
export type ServerErrorCode = (typeof RegistryErrorCode)[keyof typeof RegistryErrorCode];

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const encoder = new TextEncoder();

/** Canonical JSON (see the file comment). Throws TypeError on values outside the allowed set. */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isSafeInteger(value)) throw new TypeError(`canonical JSON allows safe integers only, got ${value}`);
      return String(value);
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw new TypeError("canonical JSON allows plain objects only");
      const keys = Object.keys(value).sort();
      const parts: string[] = [];
      for (const k of keys) {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined) continue;
        parts.push(`${JSON.stringify(k)}:${canonicalJson(v)}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
  }
}

function withoutSig(message: Record<string, unknown>): Record<string, unknown> {
  const { sig: _sig, ...rest } = message;
  return rest;
}


export function requestSigningBytes(request: Record<string, unknown>, registryKey: Uint8Array): Uint8Array {
  return concatBytes(encoder.encode(REQUEST_CONTEXT), registryKey, encoder.encode(canonicalJson(withoutSig(request))));
}

export function responseSigningBytes(response: Record<string, unknown>, requestNonce: Uint8Array): Uint8Array {
  return concatBytes(encoder.encode(RESPONSE_CONTEXT), requestNonce, encoder.encode(canonicalJson(withoutSig(response))));
}

/** responseSigningBytes of a response already in canonical JSON (`canonicalJson(response)`, no sig). */
export function responseSigningBytesOf(canonical: string, requestNonce: Uint8Array): Uint8Array {
  return concatBytes(encoder.encode(RESPONSE_CONTEXT), requestNonce, encoder.encode(canonical));
}

/**
 * The frame of a signed message from its canonical JSON (an object, without sig: what the signature
 * covers) and its signature in base64, added as the last field: the message is serialised once. The
 * same frame as encodeFrame({ ...message, sig }) but for the order of its fields, which no reader
 * depends on. Throws RangeError past MAX_FRAME, as encodeFrame does.
 */
export function signedFrame(canonical: string, sig: string): Uint8Array {
  if (!canonical.startsWith("{") || !canonical.endsWith("}")) throw new TypeError("a signed frame holds a JSON object");
  const sigField = `"sig":${JSON.stringify(sig)}}`;
  const body = encoder.encode(canonical.length === 2 ? `{${sigField}` : `${canonical.slice(0, -1)},${sigField}`);
  if (body.length > MAX_FRAME) throw new RangeError(`frame of ${body.length} bytes exceeds ${MAX_FRAME}`);
  const out = new Uint8Array(FRAME_HEADER + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, FRAME_HEADER);
  return out;
}

export function eventSigningBytes(event: Record<string, unknown>, subscribeNonce: Uint8Array): Uint8Array {
  return concatBytes(encoder.encode(EVENT_CONTEXT), subscribeNonce, encoder.encode(canonicalJson(withoutSig(event))));
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict standard base64 (padded) of exactly `size` bytes, or undefined. */
export function fromBase64(text: unknown, size: number): Uint8Array | undefined {
  if (typeof text !== "string" || text.length !== Math.ceil(size / 3) * 4 || !BASE64.test(text)) return undefined;
  const bytes = new Uint8Array(Buffer.from(text, "base64"));
  if (bytes.length !== size || toBase64(bytes) !== text) return undefined;
  return bytes;
}

/** Encodes one frame. Throws RangeError if the JSON is larger than MAX_FRAME (a caller bug). */
export function encodeFrame(message: Record<string, unknown>): Uint8Array {
  const body = encoder.encode(JSON.stringify(message));
  if (body.length > MAX_FRAME) throw new RangeError(`frame of ${body.length} bytes exceeds ${MAX_FRAME}`);
  const out = new Uint8Array(FRAME_HEADER + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, FRAME_HEADER);
  return out;
}

export type FrameEvent =
  | { kind: "message"; value: Record<string, unknown> }
  /** The frame was intact but its body is not a JSON object: framing is still in sync. */
  | { kind: "malformed"; reason: string }
  /** The stream cannot be framed any more (bad length): the connection must close. */
  | { kind: "fatal"; reason: string };

/**
 * Incremental frame reader. Holds at most one header plus one frame body; a
 * length of 0 or above MAX_FRAME is fatal before a single body byte is kept.
 */
export class FrameReader {
  private header = new Uint8Array(FRAME_HEADER);
  private headerFill = 0;
  private body: Uint8Array | undefined;
  private bodyFill = 0;
  private failed = false;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });

  push(chunk: Uint8Array): FrameEvent[] {
    const events: FrameEvent[] = [];
    let at = 0;
    while (at < chunk.length && !this.failed) {
      if (this.body === undefined) {
        const take = Math.min(FRAME_HEADER - this.headerFill, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerFill);
        this.headerFill += take;
        at += take;
        if (this.headerFill < FRAME_HEADER) break;
        const length = new DataView(this.header.buffer).getUint32(0);
        this.headerFill = 0;
        if (length === 0 || length > MAX_FRAME) {
          this.failed = true;
          events.push({ kind: "fatal", reason: `frame length ${length} is outside 1..${MAX_FRAME}` });
          break;
        }
        this.body = new Uint8Array(length);
        this.bodyFill = 0;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - at);
      this.body.set(chunk.subarray(at, at + take), this.bodyFill);
      this.bodyFill += take;
      at += take;
      if (this.bodyFill === this.body.length) {
        events.push(this.parse(this.body));
        this.body = undefined;
      }
    }
    return events;
  }

  private parse(body: Uint8Array): FrameEvent {
    let text: string;
    try {
      text = this.decoder.decode(body);
    } catch {
      return { kind: "malformed", reason: "frame is not valid UTF-8" };
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { kind: "malformed", reason: "frame is not valid JSON" };
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return { kind: "malformed", reason: "frame is not a JSON object" };
    }
    return { kind: "message", value: value as Record<string, unknown> };
  }
}

/** Every request type the registry serves. */
export const REQUEST_TYPES = [
  "register",
  "heartbeat",
  "lookup",
  "find",
  "resolve",
  "search",
  "set_hostname",
  "set_tags",
  "set_visibility",
  "trust_request",
  "trust_approve",
  "trust_reject",
  "trust_revoke",
  "trust_state",
  "trust_inbox",
  "subscribe",
  "deregister",
  "submit_receipt",
  "reputation",
  "scores",
] as const;
export type RequestType = (typeof REQUEST_TYPES)[number];

/** Fields every request carries besides its own; `node_id` is absent only on `register`. */
export const ENVELOPE_FIELDS = ["type", "id", "node_id", "ts", "nonce", "sig"] as const;

export const EVENT_TYPES = ["trust_request", "trust_approved", "trust_rejected", "trust_revoked"] as const;
export type EventType = (typeof EVENT_TYPES)[number];
