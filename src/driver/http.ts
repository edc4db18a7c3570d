/**
 * HTTP over Pilot with the ordinary `node:http` machinery: a server answers
 * on a virtual port (`serveHttp`), a client dials through an `http.Agent`
 * (`PilotAgent`), and `pilotFetch` wraps the agent in the fetch API.
 *
 * Each works over the secure channel too (port 443 style: a per-connection
 * key exchange authenticated by both node identities, then AES-256-GCM inside
 * the already encrypted stream): `serveHttp(443, handler, { secure: true })`,
 * `new PilotAgent(driver, { secure: true })`, and `https:` URLs in fetch.
 * There is no TLS and no certificate: the peer is authenticated by its Pilot
 * identity.
 */
import http from "node:http";
import { Readable } from "node:stream";
import type { Duplex } from "node:stream";
import { NodeError } from "./errors.ts";
import { misspelledUrl } from "./target.ts";
import type { PilotServer } from "./server.ts";
import type { SecureServer, SecureSocket, SecureSocketOptions } from "./secure.ts";
import type { PilotAddressInfo, PilotSocket, PilotSocketOptions } from "./socket.ts";

/** What the agent and `serveHttp` need from a Driver. */
export interface HttpDriver {
  connect(port: number, host: string): PilotSocket;
  listen(port: number, options?: PilotSocketOptions): Promise<PilotServer>;
  connectSecure(port: number, host: string): SecureSocket;
  listenSecure(port: number, options?: SecureSocketOptions): Promise<SecureServer>;
}

export interface PilotAgentOptions extends http.AgentOptions {
  /** Connect over the secure channel (`connectSecure`); the default port becomes 443. */
  secure?: boolean;
}

/**
 * An `http.Agent` whose connections go through Pilot: the request's host
 * (a hostname, a node id, or an address, which a URL spells
 * `N-NNNN-HHHH-LLLL` — see `parseTarget`) is resolved by the daemon, and the
 * URL's port is the Pilot port (default 80). Keep-alive is on by default,
 * so sequential requests to one peer reuse one Pilot connection. With
 * `secure: true` every connection is a secure channel (default port 443).
 */
export class PilotAgent extends http.Agent {
  /** Whether connections are secure channels. */
  readonly secure: boolean;

  constructor(
    private readonly driver: HttpDriver,
    options: PilotAgentOptions = {},
  ) {
    const { secure, ...agentOptions } = options;
    super({ keepAlive: true, ...agentOptions });
    this.secure = secure === true;
    // node:http fills in a request's missing port from here.
    if (this.secure) (this as unknown as { defaultPort: number }).defaultPort = 443;
  }

  /** Called by `node:http` for each new connection. */
  override createConnection(options: http.ClientRequestArgs, _callback?: (error: Error | null, socket: Duplex) => void): Duplex {
    const host = options.host ?? options.hostname ?? "localhost";
    const port = options.port === undefined || options.port === null || options.port === "" ? (this.secure ? 443 : 80) : Number(options.port);
    // Returned at once in its connecting state; writes wait for the dial (and handshake), errors arrive as 'error'.
    return (this.secure ? this.driver.connectSecure(port, host) : this.driver.connect(port, host)) as unknown as Duplex;
  }
}

/** A `node:http` request handler. An express (or connect, or koa `.callback()`) app is one. */
export type HttpHandler = (req: http.IncomingMessage, res: http.ServerResponse) => unknown;

/** Anything `serveHttp` can serve: a request handler or an `http.Server`. */
export type HttpHandlerOrServer = HttpHandler | http.Server;

export interface ServeHttpOptions {
  /** Serve over the secure channel (`listenSecure`): only secure clients (`https:` fetch, a secure PilotAgent) can talk to it. */
  secure?: boolean;
  /** With `secure`: how long a connection's handshake may take, in ms (default 10000). */
  handshakeTimeoutMs?: number;
}

/** An HTTP server answering on a Pilot port. */
export interface PilotHttpServer {
  /** The Pilot port it answers on. */
  readonly port: number;
  /** The `node:http` server behind it (never listening on a real port). */
  readonly server: http.Server;
  /** The Pilot listener feeding it (a SecureServer when served with `secure: true`). */
  readonly listener: PilotServer | SecureServer;
  address(): PilotAddressInfo;
  /**
   * Unbinds the port (no new connections), closes idle keep-alive
   * connections at once and the others as soon as their response is done.
   */
  close(): Promise<void>;
}

/** Serves `handlerOrServer` on Pilot `port` by handing each accepted socket to the HTTP server. */
export async function serveHttp(driver: HttpDriver, port: number, handlerOrServer: HttpHandlerOrServer, options: ServeHttpOptions = {}): Promise<PilotHttpServer> {
  const server =
    typeof handlerOrServer === "function" ? http.createServer(handlerOrServer as http.RequestListener) : handlerOrServer;
  // A client that ends its side right after its request (curl -T, `printf … | pilot connect`)
  // must still get its response, as over TCP: the sockets allow half-open, and node:http is
  // told to finish the response and then close instead of aborting the request on the FIN.
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  const listener: PilotServer | SecureServer = options.secure
    ? await driver.listenSecure(port, { allowHalfOpen: true, handshakeTimeoutMs: options.handshakeTimeoutMs })
    : await driver.listen(port, { allowHalfOpen: true });
  // Requests in progress per socket, so that close() can spare busy connections.
  const busy = new Map<PilotSocket | SecureSocket, number>();
  let closing = false;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket as unknown as PilotSocket;
    if (!busy.has(socket)) return;
    busy.set(socket, busy.get(socket)! + 1);
    res.once("close", () => {
      const n = (busy.get(socket) ?? 1) - 1;
      if (!busy.has(socket)) return;
      busy.set(socket, n);
      if (closing && n === 0) socket.destroySoon();
    });
  };
  server.on("request", onRequest);
  listener.on("connection", (socket: PilotSocket | SecureSocket) => {
    busy.set(socket, 0);
    socket.once("close", () => busy.delete(socket));
    server.emit("connection", socket);
  });
  listener.on("error", (error) => {
    if (server.listenerCount("error") > 0) server.emit("error", error);
  });

  return {
    port: listener.port,
    server,
    listener,
    address: () => listener.address(),
    async close() {
      closing = true;
      await listener.close();
      server.off("request", onRequest);
      for (const [socket, n] of busy) if (n === 0) socket.destroySoon();
    },
  };
}

/**
 * `fetch` over Pilot: `http://<host>[:<pilot port>]/path`, where host is
 * anything `PilotAgent` accepts (an address as `0-0000-0000-0004`; the
 * spelling `http://0:0000.0000.0004/` is refused with that hint). Returns a standard `Response` whose body
 * streams. A plain agent takes `http:` URLs (default port 80); a secure
 * agent takes `https:` URLs (default port 443), meaning Pilot's secure
 * channel, not TLS.
 */
export async function pilotFetch(agent: PilotAgent, input: string | URL | Request, init?: RequestInit): Promise<Response> {
  // `http://0:0000.0000.0004/` is no URL at all: say how to write it instead of "Invalid URL".
  const misspelled = typeof input === "string" ? misspelledUrl(input) : null;
  if (misspelled) throw misspelled;
  const request = input instanceof Request && init === undefined ? input : new Request(input as string, init);
  const url = new URL(request.url);
  const expected = agent.secure ? "https:" : "http:";
  if (url.protocol !== expected) {
    const hint =
      url.protocol === "https:" || url.protocol === "http:"
        ? "driver.fetch picks the right agent: https: for the secure channel (port 443), http: for plain streams"
        : "Pilot carries http: (plain streams) and https: (its own secure channel, no TLS)";
    throw new NodeError("invalid_argument", `${url.protocol} URLs need ${agent.secure ? "a plain" : "a secure"} agent here; this one takes ${expected}`, hint);
  }
  const body = request.body === null ? undefined : Buffer.from(await request.arrayBuffer());
  const headers: Record<string, string> = {};
  request.headers.forEach((value, key) => {
    headers[key] = value;
  });
  if (body !== undefined && headers["content-length"] === undefined) headers["content-length"] = String(body.length);
  const signal = request.signal;
  signal.throwIfAborted();

  return await new Promise<Response>((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port === "" ? (agent.secure ? 443 : 80) : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: request.method,
        headers,
        agent,
      },
      (res) => {
        const responseHeaders = new Headers();
        for (const [key, value] of Object.entries(res.headers)) {
          if (value === undefined) continue;
          if (Array.isArray(value)) for (const v of value) responseHeaders.append(key, v);
          else responseHeaders.set(key, value);
        }
        const status = res.statusCode ?? 200;
        const noBody = request.method === "HEAD" || status === 204 || status === 304;
        if (noBody) res.resume();
        const stream = noBody ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
        resolve(new Response(stream, { status, statusText: res.statusMessage ?? "", headers: responseHeaders }));
      },
    );
    const onAbort = () => req.destroy(signal.reason instanceof Error ? signal.reason : new DOMException("aborted", "AbortError"));
    signal.addEventListener("abort", onAbort, { once: true });
    req.once("close", () => signal.removeEventListener("abort", onAbort));
    req.on("error", reject);
    req.end(body);
  });
}
