/**
 * The signature on the daemon's webhook POSTs, and its check for receivers.
 * Pure: the time is an argument.
 *
 *   X-Pilot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *
 * The timestamp is inside the signed bytes, so a captured request replayed
 * later fails the freshness check; the body is signed byte for byte, so
 * verify the raw body before parsing it.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "X-Pilot-Signature";
export const TIMESTAMP_HEADER = "X-Pilot-Timestamp";
/** How far a receiver should let a signature's timestamp be from its own clock (seconds). */
export const DEFAULT_SIGNATURE_TOLERANCE_S = 300;

/** `v1` of the header: hex HMAC-SHA256 over `${timestamp}.${body}`. */
export function webhookSignature(secret: string, timestamp: number, body: string | Uint8Array): string {
  const mac = createHmac("sha256", secret);
  mac.update(`${timestamp}.`);
  mac.update(body);
  return mac.digest("hex");
}

/** The whole header value for a POST made at `timestamp` (unix seconds). */
export function signatureHeader(secret: string, timestamp: number, body: string | Uint8Array): string {
  return `t=${timestamp},v1=${webhookSignature(secret, timestamp, body)}`;
}

export type SignatureCheck = { ok: true; timestamp: number } | { ok: false; reason: "malformed" | "stale" | "mismatch" };

/**
 * Checks a webhook request: `header` is the X-Pilot-Signature value, `body`
 * the raw body as received, `nowSeconds` the receiver's clock. Any of
 * several `v1=` values may match (room for a secret rotation).
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | null | undefined,
  body: string | Uint8Array,
  nowSeconds: number,
  toleranceSeconds = DEFAULT_SIGNATURE_TOLERANCE_S,
): SignatureCheck {
  if (typeof header !== "string" || header.length > 1024) return { ok: false, reason: "malformed" };
  let timestamp: number | null = null;
  const candidates: string[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t" && /^[0-9]{1,12}$/.test(value)) timestamp = Number(value);
    else if (key === "v1" && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (timestamp === null || candidates.length === 0) return { ok: false, reason: "malformed" };
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return { ok: false, reason: "stale" };
  const expected = Buffer.from(webhookSignature(secret, timestamp, body), "hex");
  for (const c of candidates) if (timingSafeEqual(expected, Buffer.from(c, "hex"))) return { ok: true, timestamp };
  return { ok: false, reason: "mismatch" };
}
