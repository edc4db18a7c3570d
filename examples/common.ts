/**
 * Small helpers the examples share, kept apart so that each example reads as
 * its Pilot logic and its routes. Nothing here is Pilot-specific except
 * `connectToDaemon` and `serveOrExit` (a one-line error instead of a stack
 * trace when no daemon runs or the port is taken) and `urlHost`;
 * `parseResponse` reads the reply to a request written by hand on a stream.
 */
import type http from "node:http";
import { connect, NodeError, parseTarget, urlHostOf, type Driver, type PilotHttpServer, type ServeHttpOptions } from "pilot/driver";

/**
 * Ends the program on an SDK error the way the `pilot` command does: the
 * error's message, its hint on the next line, exit 1. No stack trace: the
 * message says what happened and the hint what to do. Anything that is not
 * a NodeError (a bug) is rethrown.
 */
export function exitWithError(error: unknown): never {
  if (error instanceof NodeError) {
    console.error(`error: ${error.message}${error.hint ? `\nhint: ${error.hint}` : ""}`);
    process.exit(1);
  }
  throw error;
}

/**
 * Connects to the daemon of $PILOT_HOME (or $PILOT_SOCKET), like every Pilot
 * client. When none answers, prints the reason and what to do, and exits 1.
 */
export async function connectToDaemon(): Promise<Driver> {
  return connect().catch(exitWithError);
}

/**
 * `pilot.serveHttp(port, handler, options)`, for an example's main: when the
 * port is taken on this agent (another example, a `pilot recv`, an exposed
 * port) or the daemon went away, prints the reason and exits 1.
 */
export async function serveOrExit(pilot: Driver, port: number, handler: http.RequestListener, options: ServeHttpOptions = {}): Promise<PilotHttpServer> {
  return pilot.serveHttp(port, handler, options).catch(exitWithError);
}

/** Runs `stop` once on SIGINT or SIGTERM, then exits 0. */
export function stopOnSignal(name: string, stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.log(`${name}: ${signal} received, shutting down`);
    const force = setTimeout(() => process.exit(0), 3000);
    stop()
      .catch((error: unknown) => console.error(`${name}: error while stopping: ${(error as Error).message}`))
      .finally(() => {
        clearTimeout(force);
        process.exit(0);
      });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

/** Sends `body` as JSON (one line, like Go's json.Encoder) with an explicit length. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

/** Reads a request body and parses it as JSON; `undefined` for an empty or malformed body. */
export async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Wraps a handler so that each request is logged with the Pilot address and
 * port of the agent that sent it:
 * `users: GET /api/users/u1 from 0:0000.0000.0003:49152 -> 200 (0.4 ms)`.
 */
export function logRequests(name: string, handler: (req: http.IncomingMessage, res: http.ServerResponse) => unknown): http.RequestListener {
  return (req, res) => {
    const started = performance.now();
    const from = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
    res.once("finish", () => {
      const ms = (performance.now() - started).toFixed(1);
      console.log(`${name}: ${req.method} ${req.url} from ${from} -> ${res.statusCode} (${ms} ms)`);
    });
    Promise.resolve(handler(req, res)).catch((error: unknown) => {
      console.error(`${name}: handler failed: ${(error as Error).message}`);
      if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      else res.destroy();
    });
  };
}

/**
 * A target as a URL host. Hostnames and node ids go in as they are; a full
 * address `N:NNNN.HHHH.LLLL` cannot (the ":" would read as a port), so it is
 * written with dashes, `N-NNNN-HHHH-LLLL`, which the SDK reads back as the
 * same address.
 */
export function urlHost(target: string): string {
  if (!target.includes(":")) return target;
  const parsed = parseTarget(target);
  return parsed.kind === "address" ? urlHostOf(parsed.address) : target;
}

/** One HTTP response as read off a raw stream. */
export interface RawReply {
  status: number;
  body: string;
}

/**
 * Just enough HTTP/1.1 to read one response written to a raw stream (the
 * clients that write their request by hand): status line, headers, a
 * length-delimited or chunked body.
 */
export function parseResponse(text: string): RawReply {
  const split = text.indexOf("\r\n\r\n");
  if (split === -1) throw new Error(`incomplete HTTP response: ${JSON.stringify(text.slice(0, 80))}`);
  const [statusLine, ...headerLines] = text.slice(0, split).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1]);
  if (!status) throw new Error(`not an HTTP status line: ${JSON.stringify(statusLine)}`);
  const headers = new Map(headerLines.map((line) => [line.slice(0, line.indexOf(":")).trim().toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]));
  let body = text.slice(split + 4);
  if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
    let decoded = "";
    for (let rest = body; ; ) {
      const lineEnd = rest.indexOf("\r\n");
      const size = parseInt(rest.slice(0, lineEnd), 16);
      if (!(size > 0)) break;
      decoded += rest.slice(lineEnd + 2, lineEnd + 2 + size);
      rest = rest.slice(lineEnd + 2 + size + 2);
    }
    body = decoded;
  } else if (headers.has("content-length")) {
    body = body.slice(0, Number(headers.get("content-length")));
  }
  return { status, body };
}
