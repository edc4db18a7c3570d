/** Valid port-1001 frames of every kind, for the codec tests and as fuzz seeds. */
import type { ExchangeFrame } from "../../src/protocol/exchange.ts";

export const id = (n: number) => new Uint8Array(16).fill(n);
const sha = new Uint8Array(32).map((_, i) => i);

export const SAMPLE_FRAMES: ExchangeFrame[] = [
  { kind: "message", id: id(1), type: "text", replyTo: null, total: 5, data: new TextEncoder().encode("hello") },
  { kind: "message", id: id(2), type: "json", replyTo: id(9), total: 300, data: new TextEncoder().encode('{"a":') },
  { kind: "message", id: id(3), type: "binary", replyTo: null, total: 0, data: new Uint8Array(0) },
  { kind: "message_more", data: new Uint8Array([1, 2, 3]) },
  { kind: "message_ack", id: id(4), duplicate: false },
  { kind: "message_ack", id: id(5), duplicate: true },
  { kind: "file_offer", transfer: id(6), size: 2 ** 40 + 3, name: "report.pdf" },
  { kind: "file_offer", transfer: id(7), size: 0, name: "../../etc/passwd" },
  { kind: "file_accept", transfer: id(8), offset: 123456789 },
  { kind: "file_data", data: new Uint8Array(1000).fill(7) },
  { kind: "file_end", sha256: sha },
  { kind: "file_done", transfer: id(10), sha256: sha, size: 42, name: "résumé-1.pdf" },
  { kind: "error", ref: id(0), code: "quota_exceeded", message: "your share is full" },
  { kind: "error", ref: id(11), code: "too_large", message: "" },
];
