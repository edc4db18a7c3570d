/**
 * The rendezvous's operator page (`pilot rendezvous --dashboard HOST:PORT`,
 * opt-in): aggregate counts only, as `Rendezvous.stats()` gives them: nodes
 * online, registered and stored, registry connections and requests, beacon
 * registrations and punches, relay use. It never lists a node, a hostname, a
 * tag or a trust relation: there is no code path here that could, since the
 * page reads nothing but those numbers (test/dashboard/rendezvous.test.ts
 * checks that a private node's address, name and tags appear nowhere).
 *
 * The stats are computed at most every 2 s, whoever asks how often.
 * It binds where it is told (an operator may put it behind their own proxy),
 * needs no token (there is nothing private on it), sends the same strict CSP
 * and no CORS header as the daemon's page, answers GET and HEAD only, and
 * reads no forwarded header.
 */
import type { Logger } from "../../util/log.ts";
import { jsonResponse, pageHeaders, textResponse } from "../../util/web-page.ts";
import type { RendezvousStats } from "../rendezvous.ts";
import pageHtmlText from "./page.html" with { type: "text" };
import pageJs from "./page.js" with { type: "text" };
import pageCss from "./page.css" with { type: "text" };

/** Imported as text (a string at run time); @types/bun types every .html import as an HTML bundle. */
const pageHtml = pageHtmlText as unknown as string;

const ASSETS: Record<string, { body: string; type: string }> = {
  "/": { body: pageHtml, type: "text/html; charset=utf-8" },
  "/page.js": { body: pageJs, type: "text/javascript; charset=utf-8" },
  "/page.css": { body: pageCss, type: "text/css; charset=utf-8" },
};

export interface RendezvousDashboard {
  readonly host: string;
  readonly port: number;
  close(): void;
}

/** Stats are computed at most this often (counting nodes is a store query): any number of viewers, or a flood, costs the same. */
const STATS_CACHE_MS = 2000;

export function startRendezvousDashboard(options: { host: string; port: number; stats: () => Promise<RendezvousStats>; log?: Logger; clock?: () => number }): RendezvousDashboard {
  const clock = options.clock ?? Date.now;
  let cached: { at: number; stats: Promise<RendezvousStats> } | null = null;
  const stats = (): Promise<RendezvousStats> => {
    const now = clock();
    if (!cached || now - cached.at >= STATS_CACHE_MS) {
      const fresh = options.stats();
      cached = { at: now, stats: fresh };
      // A failure is not kept: the next request asks again.
      fresh.catch(() => {
        if (cached?.stats === fresh) cached = null;
      });
    }
    return cached.stats;
  };
  const server = Bun.serve({
    hostname: options.host,
    port: options.port,
    maxRequestBodySize: 1024,
    async fetch(request) {
      if (request.method !== "GET" && request.method !== "HEAD") return textResponse(405, "method not allowed", { Allow: "GET, HEAD" });
      const path = new URL(request.url).pathname;
      if (path === "/api/stats") return jsonResponse(await stats());
      const asset = Object.hasOwn(ASSETS, path) ? ASSETS[path] : undefined;
      if (!asset) return textResponse(404, "not found");
      return new Response(request.method === "HEAD" ? null : asset.body, { headers: pageHeaders(asset.type) });
    },
    error(e) {
      options.log?.warn("operator page request failed", { error: e.message });
      return textResponse(500, "internal error");
    },
  });
  return {
    host: options.host,
    port: server.port!,
    close: () => server.stop(true),
  };
}
