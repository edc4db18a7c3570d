/**
 * The opt-in HTTP listener that serves Prometheus text-format metrics
 * (`--metrics HOST:PORT` on `pilot daemon start` and `pilot rendezvous`, config
 * key `metrics`). It binds exactly the address it is given, answers GET/HEAD
 * /metrics with the registry's text and 404 to every other path, and reads no
 * request header at all: no X-Forwarded-For / X-Real-IP, no Host check, so
 * nothing a client sends changes what it gets or how it is judged. Who may
 * scrape is decided by where it listens (loopback by default in every example);
 * a non-loopback address works but is logged as a warning.
 *
 *   parseMetricsAddress("127.0.0.1:9100")  -> { host, port }   (RangeError when bad)
 *   startMetricsListener({ host, port, render, log }) -> { host, port, url, close() }
 */
import type { Logger } from "./log.ts";

export interface MetricsAddress {
  readonly host: string;
  readonly port: number;
}

export interface MetricsListener extends MetricsAddress {
  /** http://HOST:PORT/metrics with the port actually bound. */
  readonly url: string;
  close(): void;
}

export interface MetricsListenerOptions extends MetricsAddress {
  /** The exposition: content type and text (prom-client's Registry.contentType / metrics()). */
  readonly render: () => Promise<{ contentType: string; text: string }>;
  readonly log?: Logger;
}

/** An example for hints. */
export const METRICS_EXAMPLE = "127.0.0.1:9100";

/**
 * "IPv4:PORT" or "[IPv6]:PORT", IP literals only (a name would be resolved to
 * something the operator did not write); port 0 binds any free port.
 */
export function parseMetricsAddress(text: string): MetricsAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9]{1,3}(?:\.[0-9]{1,3}){3})):([0-9]{1,5})$/.exec(text.trim());
  if (!m) throw new RangeError(`"${text}" is not IP:PORT (an IPv4 address or [IPv6], and a port)`);
  const port = Number(m[3]);
  if (port > 65535) throw new RangeError(`"${text}": port ${port} is above 65535`);
  const host = m[1] ?? m[2]!;
  if (m[2] && m[2].split(".").some((o) => Number(o) > 255)) throw new RangeError(`"${text}": ${m[2]} is not an IPv4 address`);
  return { host, port };
}

/** 127.0.0.0/8 and ::1 (and v4-mapped loopback). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^::ffff:/, "");
  return /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(h) || h === "::1" || h === "0:0:0:0:0:0:0:1";
}

function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export function startMetricsListener(options: MetricsListenerOptions): MetricsListener {
  const server = Bun.serve({
    hostname: options.host,
    port: options.port,
    reusePort: false,
    // Nothing is read from a request's body; idle connections do not linger.
    maxRequestBodySize: 1024,
    idleTimeout: 10,
    // Only the method and the path are read; never a header.
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path !== "/metrics") return new Response("not found\n", { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } });
      if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
      try {
        const { contentType, text } = await options.render();
        return new Response(req.method === "HEAD" ? null : text, { headers: { "content-type": contentType, "cache-control": "no-store" } });
      } catch (e) {
        options.log?.warn("metrics collection failed", { error: (e as Error).message });
        return new Response("metrics unavailable\n", { status: 500 });
      }
    },
    error() {
      return new Response("bad request\n", { status: 400 });
    },
  });
  const port = server.port ?? options.port;
  const address = formatHostPort(options.host, port);
  if (!isLoopback(options.host)) {
    options.log?.warn("metrics listener is reachable from other hosts; anyone who can reach it reads this process's counters", { address });
  }
  options.log?.info("metrics listening", { url: `http://${address}/metrics` });
  return {
    host: options.host,
    port,
    url: `http://${address}/metrics`,
    close: () => void server.stop(true),
  };
}
