/**
 * What every page Pilot serves over HTTP (the daemon's dashboard, the
 * rendezvous's operator page) sends with it: a strict Content-Security-Policy
 * (scripts and styles from the page's own origin only, nothing inline, no
 * frames, no forms), no caching, no referrer, no sniffing, and no CORS
 * header of any kind, so another origin can neither read nor embed it.
 */
import { createHash, timingSafeEqual } from "node:crypto";

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

export function pageHeaders(contentType: string, extra: Record<string, string> = {}): Headers {
  return new Headers({
    "Content-Type": contentType,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    ...extra,
  });
}

export function textResponse(status: number, text: string, extra: Record<string, string> = {}): Response {
  return new Response(text + "\n", { status, headers: pageHeaders("text/plain; charset=utf-8", extra) });
}

export function jsonResponse(data: unknown, status = 200): Response {
  return new Response(JSON.stringify(data), { status, headers: pageHeaders("application/json; charset=utf-8") });
}

/** Compares two secrets in time that depends on neither (both are hashed to the same length first). */
export function secretsEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

/** A literal loopback address: 127.0.0.0/8 or ::1. */
export function isLoopbackHost(host: string): boolean {
  return /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(host) ? host.split(".").every((o) => Number(o) <= 255) : host === "::1";
}
