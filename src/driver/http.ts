/**
 * HTTP over Pilot with the ordinary `node:http` machinery: a server answers
 * on a virtual port (`serveHttp`), a client dials through an `http.Agent`
 * (`PilotAgent`), and `pilotFetch` wraps the agent in the fetch API.
 */
import http from "node:http";
import { Readable } from "node:stream";
import type { Duplex } from "node:stream";
import { NodeError } from "./errors.ts";
import type { PilotServer } from "./server.ts";
import type { PilotAddressInfo, PilotSocket, PilotSocketOptions } from "./socket.ts";

/** What the agent and `serveHttp` need from a Driver. */
export interface HttpDriver {
  connect(port: number, host: string): PilotSocket;
  listen(port: number, options?: PilotSocketOptions): Promise<PilotServer>;
}

/**
 * An `http.Agent` whose connections go through Pilot: the request's host
 * (a hostname, a full address, a node id, or the URL forms `NNNN.HHHH.LLLL`
 * and `a.b.c.d` — see `parseTarget`) is resolved by the daemon, and the
 * URL's port is the Pilot port (default 80). Keep-alive is on by default,
 * so sequential requests to one peer reuse one Pilot connection.
 */
export class PilotAgent extends http.Agent {
  constructor(
    private readonly driver: HttpDriver,
    options: http.AgentOptions = {},
  ) {
    super({ keepAlive: true, ...options });
  }

  /** Called by `node:http` for each new connection. */
  override createConnection(options: http.ClientRequestArgs, _callback?: (error: Error | null, socket: Duplex) => void): Duplex {
    const host = options.host ?? options.hostname ?? "localhost";
    const port = options.port === undefined || options.port === null || options.port === "" ? 80 : Number(options.port);
    // Returned at once in its connecting state; writes wait for the dial, errors arrive as 'error'.
    return this.driver.connect(port, host) as unknown as Duplex;
  }
}

/** A `node:http` request handler. An express (or connect, or koa `.callback()`) app is one. */
export type HttpHandler = (req: http.IncomingMessage, res: http.ServerResponse) => unknown;

/** Anything `serveHttp` can serve: a request handler or an `http.Server`. */
export type HttpHandlerOrServer = HttpHandler | http.Server;

/** An HTTP server answering on a Pilot port. */
export interface PilotHttpServer {
  /** The Pilot port it answers on. */
  readonly port: number;
  /** The `node:http` server behind it (never listening on a real port). */
  readonly server: http.Server;
  /** The Pilot listener feeding it. */
  readonly listener: PilotServer;
  address(): PilotAddressInfo;
  /**
   * Unbinds the port (no new connections), closes idle keep-alive
   * connections at once and the others as soon as their response is done.
   */
  close(): Promise<void>;
}

/** Serves `handlerOrServer` on Pilot `port` by handing each accepted socket to the HTTP server. */
export async function serveHttp(driver: HttpDriver, port: number, handlerOrServer: HttpHandlerOrServer): Promise<PilotHttpServer> {
  const server =
    typeof handlerOrServer === "function" ? http.createServer(handlerOrServer as http.RequestListener) : handlerOrServer;
  // A client that ends its side right after its request (curl -T, `printf … | pilot connect`)
  // must still get its response, as over TCP: the sockets allow half-open, and node:http is
  // told to finish the response and then close instead of aborting the request on the FIN.
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  const listener = await driver.listen(port, { allowHalfOpen: true });
  // Requests in progress per socket, so that close() can spare busy connections.
  const busy = new Map<PilotSocket, number>();
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
  listener.on("connection", (socket: PilotSocket) => {
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
 * anything `PilotAgent` accepts. Returns a standard `Response` whose body
 * streams. Only `http:` URLs (Pilot encrypts the tunnel; there is no TLS inside).
 */
export async function pilotFetch(agent: PilotAgent, input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const request = input instanceof Request && init === undefined ? input : new Request(input as string, init);
  const url = new URL(request.url);
  if (url.protocol !== "http:") {
    throw new NodeError("invalid_argument", `${url.protocol} URLs are not supported over Pilot; use http://`, "Pilot's tunnel is already encrypted end to end");
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
        port: url.port === "" ? 80 : Number(url.port),
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
