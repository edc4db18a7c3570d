/** Text output for people: aligned tables, times, sizes and ages. */

/** Rows under a header, each column as wide as its widest cell, two spaces apart. */
export function table(header: readonly string[], rows: readonly (readonly unknown[])[], indent = ""): string {
  const cells = [header, ...rows].map((r) => r.map((c) => (c === null || c === undefined || c === "" ? "-" : String(c))));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

/** Milliseconds with sensible precision: 0.412 ms, 12.3 ms, 1534 ms. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "-";
  if (value < 1) return `${value.toFixed(3)} ms`;
  if (value < 100) return `${value.toFixed(2)} ms`;
  return `${Math.round(value)} ms`;
}

export function bytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** 45s, 12m 3s, 5h 2m, 3d 4h. */
export function duration(secs: number): string {
  const s = Math.max(0, Math.floor(secs));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** How long ago an ISO time or epoch-ms was: "just now", "5m 2s ago". */
export function ago(when: string | number | null | undefined, now = Date.now()): string {
  if (when === null || when === undefined) return "-";
  const t = typeof when === "number" ? when : Date.parse(when);
  if (!Number.isFinite(t)) return "-";
  const secs = (now - t) / 1000;
  return secs < 5 ? "just now" : `${duration(secs)} ago`;
}

/** Epoch milliseconds as an ISO 8601 string (JSON output), null for none. */
export function isoTime(epochMs: unknown): string | null {
  return typeof epochMs === "number" && Number.isFinite(epochMs) ? new Date(epochMs).toISOString() : null;
}

/** "agent-b (0:0000.0000.0005)" or just the address. */
export function nodeLabel(address: string, hostname?: string | null): string {
  return hostname ? `${hostname} (${address})` : address;
}

/** How to name a node the user named `text`: "agent-b (node 5)", or "node 5 (0:0000.0000.0005)" for an id or address. */
export function named(text: string, nodeId: number, address: string): string {
  return /^[0-9]+$/.test(text) || text.includes(":") || /^[0-9A-Fa-f]{4}\./.test(text) ? `node ${nodeId} (${address})` : `${text} (node ${nodeId})`;
}

/** The node id inside an address `N:NNNN.HHHH.LLLL`. */
export function nodeIdOf(address: string): number {
  const groups = address.slice(address.indexOf(":") + 1).split(".");
  return parseInt((groups[1] ?? "") + (groups[2] ?? ""), 16);
}
