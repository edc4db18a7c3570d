/**
 * The daemon's local dashboard: one web page (HTML, JS and CSS embedded in the
 * binary, uPlot vendored for the plots) and one JSON endpoint, `/api/state`,
 * that the page polls every second (state.ts says what it holds).
 *
 * Who may look (docs/DASHBOARD.md):
 * - it listens on a loopback address only (127.0.0.0/8 or ::1; openLocalDashboard refuses
 *   anything else), on an ephemeral port unless told;
 * - every request needs the token: 32 random bytes, generated once and kept in
 *   `$PILOT_HOME/dashboard_token` (mode 0600). It is accepted as `?token=`
 *   (answered with a redirect that sets it as an HttpOnly, SameSite=Strict
 *   cookie and drops it from the address bar), as that cookie, or as
 *   `Authorization: Bearer`. Compared in constant time. Missing or wrong: 401;
 * - the Host header must name this listener (`127.0.0.1:PORT` or
 *   `localhost:PORT`): a page on another origin that rebinds its DNS name to
 *   127.0.0.1 gets 403 (DNS rebinding);
 * - no CORS header ever, a strict Content-Security-Policy, GET and HEAD only,
 *   and no forwarded header (X-Forwarded-For, X-Real-IP, Forwarded) is read.
 *
 * Cookies are not separated by port: the cookie's name carries the port, so
 * two daemons on one host keep theirs apart, but any other web server on
 * 127.0.0.1 that the browser visits is sent it too (like any localhost cookie).
 */
import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { writeFileAtomic } from "../../util/atomic-file.ts";
import type { Logger } from "../../util/log.ts";
import { isLoopbackHost, jsonResponse, pageHeaders, secretsEqual, textResponse } from "../../util/web-page.ts";
import { DashboardState, type DashboardSource } from "./state.ts";
import { controlSocketPath, probe } from "../../gateway/control.ts";
import pageHtmlText from "./page.html" with { type: "text" };
import pageJs from "./page.js" with { type: "text" };
import pageCss from "./page.css" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };

/** Imported as text (a string at run time); @types/bun types every .html import as an HTML bundle. */
const pageHtml = pageHtmlText as unknown as string;

export const DASHBOARD_TOKEN_FILE = "dashboard_token";

/** The dashboard's token from `home`, created (32 random bytes, hex, mode 0600) if missing or unusable. */
export function dashboardToken(home: string): { token: string; file: string; created: boolean } {
  const file = join(home, DASHBOARD_TOKEN_FILE);
  if (existsSync(file)) {
    const text = readFileSync(file, "utf8").trim();
    if (/^[0-9a-f]{64}$/.test(text)) {
      // Readable by others is a token anyone on the host can use: close it.
      if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
      return { token: text, file, created: false };
    }
  }
  const token = randomBytes(32).toString("hex");
  writeFileAtomic(file, token + "\n", 0o600);
  return { token, file, created: true };
}

export interface DashboardServerOptions {
  /** A loopback address (openLocalDashboard checks). */
  readonly host: string;
  /** 0: any free port. */
  readonly port: number;
  readonly token: string;
  readonly state: DashboardState;
  readonly log?: Logger;
}

export interface DashboardServer {
  /** The page's address, without the token. */
  readonly url: string;
  readonly port: number;
  close(): void;
}

interface Asset {
  readonly body: string;
  readonly type: string;
}

const ASSETS: Record<string, Asset> = {
  "/": { body: pageHtml, type: "text/html; charset=utf-8" },
  "/page.js": { body: pageJs, type: "text/javascript; charset=utf-8" },
  "/page.css": { body: pageCss, type: "text/css; charset=utf-8" },
  "/uplot.js": { body: uplotJs, type: "text/javascript; charset=utf-8" },
  "/uplot.css": { body: uplotCss, type: "text/css; charset=utf-8" },
};

export function startDashboardServer(options: DashboardServerOptions): DashboardServer {
  const hostText = options.host.includes(":") ? `[${options.host}]` : options.host;
  let allowedHosts = new Set<string>();
  const cookieName = () => `pilot_dashboard_${server.port}`;
  const handle = async (request: Request): Promise<Response> => {
    // DNS rebinding: a foreign name that resolves to us is not us.
    const host = (request.headers.get("host") ?? "").toLowerCase();
    if (!allowedHosts.has(host)) return textResponse(403, "forbidden: this dashboard answers only to its own loopback address");
    if (request.method !== "GET" && request.method !== "HEAD") return textResponse(405, "method not allowed", { Allow: "GET, HEAD" });
    const url = new URL(request.url);
    const asset = Object.hasOwn(ASSETS, url.pathname) ? ASSETS[url.pathname] : undefined;
    const isApi = url.pathname === "/api/state";
    if (!asset && !isApi) return textResponse(404, "not found");

    const queryToken = url.searchParams.get("token");
    if (queryToken !== null) {
      if (!secretsEqual(queryToken, options.token)) return unauthorized();
      // Into an HttpOnly cookie, and out of the address bar (and the history).
      return new Response(null, {
        status: 303,
        headers: pageHeaders("text/plain; charset=utf-8", {
          Location: url.pathname,
          "Set-Cookie": `${cookieName()}=${options.token}; Path=/; HttpOnly; SameSite=Strict`,
        }),
      });
    }
    // Any cookie of our name may be ours: another local server can set one under the same name (cookies ignore ports).
    const presented = [...(bearerOf(request) !== null ? [bearerOf(request)!] : []), ...cookiesOf(request, cookieName())];
    if (!presented.slice(0, 8).some((p) => secretsEqual(p, options.token))) return unauthorized();

    if (asset) return new Response(request.method === "HEAD" ? null : asset.body, { headers: pageHeaders(asset.type) });
    try {
      return jsonResponse(await options.state.snapshot());
    } catch (e) {
      options.log?.warn("dashboard state failed", { error: (e as Error).message });
      return jsonResponse({ error: "internal" }, 500);
    }
  };
  const server = Bun.serve({
    hostname: options.host,
    port: options.port,
    // Pages and small JSON: a request body is never read, and headers are small.
    maxRequestBodySize: 1024,
    fetch: handle,
    error: (e) => {
      options.log?.warn("dashboard request failed", { error: e.message });
      return textResponse(500, "internal error");
    },
  });
  const port = server.port!;
  allowedHosts = new Set([`${hostText}:${port}`, `localhost:${port}`]);
  options.state.start();
  return {
    url: `http://${hostText}:${port}/`,
    port,
    close() {
      options.state.stop();
      server.stop(true);
    },
  };
}

function unauthorized(): Response {
  return textResponse(401, "unauthorized: open the address that `pilot dashboard` prints (it carries the token)", { "WWW-Authenticate": 'Bearer realm="pilot-dashboard"' });
}

function bearerOf(request: Request): string | null {
  const m = /^Bearer\s+(\S+)$/i.exec(request.headers.get("authorization") ?? "");
  return m ? m[1]! : null;
}

/** Every value of the cookie `name` in the request. */
function cookiesOf(request: Request, name: string): string[] {
  const out: string[] = [];
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out;
}

export interface LocalDashboard {
  readonly server: DashboardServer;
  readonly tokenFile: string;
  /** The IPC `dashboard` call: the page's address with the token, and where the token is kept. */
  describe(): { url: string; address: string; token_file: string };
  close(): void;
}

/** The daemon's dashboard: its token from `home`, its state from `source`, listening on loopback `host:port`. */
export function openLocalDashboard(options: { home: string; host: string; port: number; source: DashboardSource; gatewayDir?: string; log?: Logger }): LocalDashboard {
  if (!isLoopbackHost(options.host)) throw new RangeError(`the dashboard listens on loopback only (127.0.0.1 or ::1), not ${options.host}`);
  const { token, file, created } = dashboardToken(options.home);
  if (created) options.log?.debug("dashboard token created", { file });
  const gatewayDir = options.gatewayDir;
  // This home's gateway runs in its own process: its mappings come from its control socket (what `pilot gateway list` asks).
  const source: DashboardSource = gatewayDir
    ? { call: (m, p) => options.source.call(m, p), events: options.source.events, gateway: () => probe(controlSocketPath(gatewayDir), 1000) }
    : options.source;
  const state = new DashboardState(source);
  const server = startDashboardServer({ host: options.host, port: options.port, token, state, log: options.log });
  options.log?.debug("dashboard listening", { url: server.url });
  return {
    server,
    tokenFile: file,
    describe: () => ({ url: `${server.url}?token=${token}`, address: server.url, token_file: file }),
    close: () => server.close(),
  };
}
