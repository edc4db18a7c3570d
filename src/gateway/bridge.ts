/**
 * One bridged connection: a TCP client of the gateway on one side, a Pilot
 * stream to the mapped agent's same port on the other.
 *
 * - The Pilot dial starts the moment the TCP connection is accepted; bytes
 *   the client sends meanwhile are held (at most EARLY_LIMIT, then the client
 *   is paused, so the kernel pushes back) and sent first once connected.
 * - Each direction has backpressure: a write that is not taken pauses the
 *   source until 'drain'. A client that does not read stops crediting its
 *   Pilot stream, and nothing else (other streams have their own credit).
 * - Half-close is forwarded both ways (a FIN becomes a FIN); the connection
 *   is finished when both directions are. A reset on either side resets the
 *   other. There is no idle timeout on either side.
 * - If the Pilot side fails before the agent sent a single byte and the
 *   client's first bytes are an HTTP/1 request, the client gets a
 *   `502 Bad Gateway` that says why (the Pilot code and hint) instead of a
 *   bare reset. Anything else is reset.
 * - On a plain port, if the agent's first bytes are a secure-channel alert
 *   (docs/PROTOCOL.md §5.1: it serves that port only with the secure channel
 *   and refused the plain bytes) and the client spoke HTTP, the client gets a
 *   502 that says to map the port with --secure, not the alert's raw bytes.
 *   Only a first byte of 0x15 is held back to check (never the first byte of
 *   an HTTP response), so normal traffic is not delayed.
 */
import type net from "node:net";
import type { Duplex } from "node:stream";
import { asGatewayError, GatewayError } from "./errors.ts";

/** The Pilot side: a PilotSocket, or anything with the same surface. */
export interface PilotStream extends Duplex {
  setNoDelay(noDelay?: boolean): this;
  resetAndDestroy(): this;
}

export interface BridgeOptions {
  /** Opens the Pilot stream. */
  dial(): Promise<PilotStream>;
  /** "data-analyst (0:0000.0000.0007)": how the 502 names the agent. */
  label: string;
  /** How commands in hints name it: its hostname, else its address. */
  name: string;
  port: number;
  /** The port is mapped with --secure (the stream is a secure-channel socket). */
  secure?: boolean;
  /** Called once when the connection is finished, with the failure if there was one. */
  onDone?(result: BridgeResult): void;
}

export interface BridgeResult {
  bytesUp: number;
  bytesDown: number;
  /** The Pilot failure (dial or mid-stream), if any. */
  error?: GatewayError;
  /** True if the client was answered with a 502. */
  answered502: boolean;
}

/** Most bytes held from the client while the Pilot stream is being dialled. */
const EARLY_LIMIT = 64 * 1024;
/** How long to wait for a client's first bytes after a failed dial, to tell HTTP from anything else. */
const FIRST_BYTES_WAIT_MS = 1500;
/** How long a client may keep sending after its 502 before the socket is closed anyway. */
const LINGER_MS = 2000;
/** How much of the client's first bytes is kept to tell whether it spoke HTTP. */
const FIRST_UP_KEEP = 8192;

/** A secure-channel Alert frame (docs/PROTOCOL.md §5.1): type 0x15, reserved 0, body length 1, code 1-5. */
const ALERT_FRAME_TYPE = 0x15;
const ALERT_FRAME_SIZE = 5;

/**
 * Are these an agent's first bytes on a plain port a secure-channel alert?
 * "maybe" while fewer than 5 bytes are in and they could still be one.
 */
export function looksLikeSecureAlert(bytes: Buffer): HttpGuess {
  if (bytes.length === 0) return "maybe";
  if (bytes[0] !== ALERT_FRAME_TYPE) return "no";
  const expected = [ALERT_FRAME_TYPE, 0, 0, 1];
  for (let i = 1; i < Math.min(bytes.length, 4); i++) if (bytes[i] !== expected[i]) return "no";
  if (bytes.length < ALERT_FRAME_SIZE) return "maybe";
  return bytes[4]! >= 1 && bytes[4]! <= 5 ? "yes" : "no";
}

/** A secure-channel handshake failure that says the agent's port is not a secure listener. */
const NOT_SECURE_LISTENER = new Set(["unexpected_message", "bad_frame", "unsupported_version"]);

export type HttpGuess = "yes" | "no" | "maybe";

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Is this the start of an HTTP/1.x request? "maybe" when more bytes are needed to tell. */
export function looksLikeHttp(bytes: Buffer): HttpGuess {
  if (bytes.length === 0) return "maybe";
  const head = bytes.subarray(0, 8192).toString("latin1");
  const nl = head.indexOf("\n");
  const line = (nl >= 0 ? head.slice(0, nl) : head).replace(/\r$/, "");
  const parts = line.split(" ");
  const method = parts[0] ?? "";
  if (method.length > 0 && !TOKEN.test(method)) return "no";
  if (parts.length === 1) return nl >= 0 || method.length > 20 ? "no" : "maybe";
  if (nl < 0) return method.length > 0 && head.length < 8192 ? "maybe" : "no";
  return parts.length === 3 && parts[1]!.length > 0 && /^HTTP\/1\.[0-9]$/.test(parts[2]!) ? "yes" : "no";
}

/** What the 502 says, by Pilot error code. */
function explain(error: GatewayError, label: string, name: string, port: number): { reason: string; hint?: string } {
  switch (error.code) {
    case "not_found":
      return {
        reason: `${label} is not visible to this node: it does not exist, or it is private and does not trust this node (was trust revoked?)`,
        hint: `ask it for trust: pilot handshake ${name} "why"; see whom you trust: pilot trust`,
      };
    case "not_trusted":
      return { reason: `${label} refused the connection: trust with it is missing or was revoked (${error.message})`, hint: `ask it for trust again: pilot handshake ${name} "why"` };
    case "connection_refused":
      return { reason: `nothing listens on Pilot port ${port} of ${label}`, hint: `start the service on that agent, or map the port it really serves: pilot gateway map ${name} --ports <port>` };
    case "unreachable":
    case "timeout": {
      // The daemon's fast failure names the reason: "<address> is offline: ..." (src/daemon/dial-watch.ts).
      const offline = /^\S+ is offline: (.*)$/s.exec(error.message);
      if (offline) return { reason: `${label} is offline: ${offline[1]}`, hint: `start its daemon, then retry; check with: pilot find ${name}` };
      return { reason: `${label} did not answer (${error.message})`, hint: `its daemon may be offline; check with: pilot find ${name} and pilot ping ${name}` };
    }
    case "not_running":
    case "closed":
      return { reason: "the local Pilot daemon is not running", hint: "start it with: pilot daemon start" };
    case "connection_reset":
      return { reason: `${label} reset the connection before answering (${error.message})`, hint: error.hint };
    case "secure_channel_required":
      return {
        reason: `${label} serves Pilot port ${port} only over the secure channel, and this port is mapped without --secure (the agent refused the plain request)`,
        hint: `map the port with --secure: pilot gateway unmap ${name} --ports ${port} && pilot gateway map ${name} --ports ${port} --secure`,
      };
    case "secure_channel_unsupported":
      return {
        reason: `${label} does not speak the secure channel on Pilot port ${port}, which is mapped with --secure (${error.message})`,
        hint: `map the port without --secure: pilot gateway unmap ${name} --ports ${port} && pilot gateway map ${name} --ports ${port}; or serve it with listenSecure / serveHttp(port, handler, { secure: true })`,
      };
    default:
      return { reason: `the connection to ${label} port ${port} failed: ${error.message}`, hint: error.hint };
  }
}

/** The 502 response for a failed Pilot connection (a HEAD request gets no body). */
export function badGatewayResponse(error: GatewayError, agent: { label: string; name: string }, port: number, method: string): string {
  const { reason, hint } = explain(error, agent.label, agent.name, port);
  const body = `502 Bad Gateway: ${reason} [pilot: ${error.code}]\n${hint ? `hint: ${hint}\n` : ""}`;
  const length = Buffer.byteLength(body);
  const header =
    "HTTP/1.1 502 Bad Gateway\r\n" +
    "Content-Type: text/plain; charset=utf-8\r\n" +
    `Content-Length: ${length}\r\n` +
    `X-Pilot-Error: ${error.code}\r\n` +
    (hint ? `X-Pilot-Hint: ${headerSafe(hint)}\r\n` : "") +
    "Cache-Control: no-store\r\n" +
    "Connection: close\r\n\r\n";
  return method === "HEAD" ? header : header + body;
}

/** A header value: printable ASCII only (no CR/LF can end the header early). */
function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?").slice(0, 1024);
}

/** The request method at the start of `bytes` ("" if none). */
function methodOf(bytes: Buffer): string {
  return bytes.toString("latin1", 0, 16).split(" ")[0] ?? "";
}

/** Bridges an accepted TCP socket (created with allowHalfOpen) to a Pilot stream. */
export function bridge(client: net.Socket, options: BridgeOptions): { reset(): void } {
  let early: Buffer[] = [];
  let earlyBytes = 0;
  let clientEnded = false;
  let pilot: PilotStream | null = null;
  let bytesUp = 0;
  let bytesDown = 0;
  let finished = false;
  let pilotError: GatewayError | undefined;
  let answered502 = false;
  let aborted = false;

  const finish = () => {
    if (finished) return;
    finished = true;
    options.onDone?.({ bytesUp, bytesDown, ...(pilotError ? { error: pilotError } : {}), answered502 });
  };
  const firstBytes = () => Buffer.concat(early, earlyBytes);

  client.setNoDelay(true);
  const onEarlyData = (chunk: Buffer) => {
    early.push(chunk);
    earlyBytes += chunk.length;
    if (earlyBytes >= EARLY_LIMIT) client.pause();
  };
  const onClientEnd = () => {
    clientEnded = true;
  };
  client.on("data", onEarlyData);
  client.on("end", onClientEnd);
  client.on("error", () => {
    // A reset (or another failure) of the client: reset the agent's side too.
    if (pilot && !pilot.destroyed) pilot.resetAndDestroy();
  });
  client.on("close", () => {
    if (!pilot) {
      aborted = true; // the dial's outcome finishes the bridge
      if (pilotError) finish();
      return;
    }
    // Closed without both directions finished: nothing more can be delivered either way.
    if (!pilot.destroyed && !(clientEnded && pilot.readableEnded)) pilot.resetAndDestroy();
    if (pilot.destroyed) finish();
  });

  /** Answers a 502 if the client spoke HTTP, else resets; waits briefly for the first bytes if needed. */
  const failClient = (error: GatewayError) => {
    pilotError = error;
    if (client.destroyed) return finish();
    client.once("close", finish);
    const decide = (): boolean => {
      const guess = looksLikeHttp(firstBytes());
      if (guess === "maybe" && !clientEnded) return false;
      if (guess === "yes") answer502(error);
      else client.resetAndDestroy();
      return true;
    };
    if (decide()) return;
    // Not enough bytes yet to tell: wait for more, but not for long.
    client.resume();
    const timer = setTimeout(() => {
      cleanup();
      if (!client.destroyed) client.resetAndDestroy();
    }, FIRST_BYTES_WAIT_MS);
    const onMore = () => {
      if (decide()) cleanup();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.removeListener("data", onMore);
      client.removeListener("end", onMore);
      client.removeListener("close", cleanup);
    };
    // Registered after onEarlyData/onClientEnd, so the new bytes are already counted.
    client.on("data", onMore);
    client.on("end", onMore);
    client.on("close", cleanup);
  };

  const answer502 = (error: GatewayError, method = methodOf(firstBytes())) => {
    answered502 = true;
    client.removeListener("data", onEarlyData);
    early = [];
    earlyBytes = 0;
    client.on("data", () => {}); // read and drop the rest of the request
    client.resume();
    client.end(badGatewayResponse(error, options, options.port, method));
    const timer = setTimeout(() => client.destroy(), LINGER_MS);
    timer.unref?.();
    client.once("close", () => clearTimeout(timer));
  };

  const attach = (stream: PilotStream) => {
    pilot = stream;
    stream.setNoDelay(true);
    client.removeListener("data", onEarlyData);
    const held = firstBytes();
    early = [];
    earlyBytes = 0;
    // The start of what the client sent, to tell later whether it spoke HTTP.
    let firstUp = held.subarray(0, FIRST_UP_KEEP);
    const keepFirstUp = (chunk: Buffer) => {
      if (firstUp.length < FIRST_UP_KEEP) firstUp = Buffer.concat([firstUp, chunk.subarray(0, FIRST_UP_KEEP - firstUp.length)]);
    };

    // client -> agent, starting with what arrived during the dial
    let ok = true;
    if (held.length > 0) {
      bytesUp += held.length;
      ok = stream.write(held);
    }
    if (clientEnded) stream.end();
    const up = (chunk: Buffer) => {
      bytesUp += chunk.length;
      keepFirstUp(chunk);
      if (!stream.write(chunk)) client.pause();
    };
    const upEnd = () => stream.end();
    const upResume = () => client.resume();
    client.on("data", up);
    client.on("end", upEnd);
    stream.on("drain", upResume);

    // agent -> client. On a plain port the first bytes are checked for a secure-channel
    // alert (held back only while they start with its type byte 0x15).
    let sniffed: Buffer | null = options.secure ? null : Buffer.alloc(0);
    const down = (chunk: Buffer) => {
      bytesDown += chunk.length;
      if (!client.write(chunk)) stream.pause();
    };
    const flushSniffed = () => {
      const bytes = sniffed;
      sniffed = null;
      if (bytes && bytes.length > 0) down(bytes);
    };
    stream.on("data", (chunk: Buffer) => {
      if (answered502) return;
      if (sniffed === null) return down(chunk);
      sniffed = sniffed.length === 0 ? chunk : Buffer.concat([sniffed, chunk]);
      const alert = looksLikeSecureAlert(sniffed);
      if (alert === "maybe") return;
      if (alert === "yes" && looksLikeHttp(firstUp) === "yes" && !client.destroyed) {
        sniffed = null;
        client.removeListener("data", up);
        client.removeListener("end", upEnd);
        pilotError = new GatewayError(
          "secure_channel_required",
          `the agent serves Pilot port ${options.port} only over the secure channel and refused the plain request`,
        );
        if (!stream.destroyed) stream.resetAndDestroy();
        answer502(pilotError, methodOf(firstUp));
        return;
      }
      flushSniffed();
    });
    client.on("drain", () => stream.resume());
    stream.on("end", () => {
      if (answered502) return;
      flushSniffed();
      if (!client.destroyed) client.end();
    });

    stream.on("error", (e: Error) => {
      if (answered502) return;
      client.removeListener("data", up);
      client.removeListener("end", upEnd);
      const error = asGatewayError(pilotCodeOf(e));
      // A Pilot failure (it carries a Pilot code) before the agent answered an HTTP client.
      const pilotFailure = typeof (e as { pilotCode?: unknown }).pilotCode === "string" || e instanceof GatewayError;
      if (pilotFailure && bytesDown === 0 && !client.destroyed && looksLikeHttp(firstUp) === "yes") {
        // The agent's side failed before it answered (e.g. trust revoked): still a readable error.
        early = [firstUp];
        earlyBytes = firstUp.length;
        client.on("data", onEarlyData);
        failClient(error);
        return;
      }
      flushSniffed();
      pilotError = error;
      if (!client.destroyed) client.resetAndDestroy();
    });
    stream.on("close", () => {
      if (client.destroyed) finish();
      else client.once("close", finish);
    });

    if (ok) client.resume();
    else client.pause();
  };

  options.dial().then(
    (stream) => {
      if (aborted || client.destroyed) {
        stream.resetAndDestroy();
        finish();
        return;
      }
      attach(stream);
    },
    (e: unknown) => failClient(dialError(e, options.secure === true)),
  );

  return {
    reset() {
      if (pilot && !pilot.destroyed) pilot.resetAndDestroy();
      if (!client.destroyed) client.resetAndDestroy();
    },
  };
}

/** A failed dial as a GatewayError; a secure handshake the agent's port does not speak says so. */
function dialError(e: unknown, secure: boolean): GatewayError {
  const secureCode = (e as { secureCode?: unknown } | null)?.secureCode;
  if (secure && typeof secureCode === "string" && NOT_SECURE_LISTENER.has(secureCode)) {
    return new GatewayError("secure_channel_unsupported", `its answer to the secure handshake was not the secure channel (${secureCode})`);
  }
  const error = asGatewayError(e instanceof Error ? pilotCodeOf(e) : e);
  // The stream was accepted (a refused one is connection_refused), then reset before the agent's
  // half of the handshake: what a plain service does with a ClientHello it cannot parse.
  if (secure && error.code === "connection_reset" && secureCode === undefined) {
    return new GatewayError("secure_channel_unsupported", "it reset the connection during the secure handshake");
  }
  return error;
}

/** A PilotSocketError carries the Pilot code in `pilotCode`; its `code` is errno-style. */
function pilotCodeOf(e: Error): unknown {
  const err = e as Error & { pilotCode?: string; hint?: string };
  if (typeof err.pilotCode === "string") return { code: err.pilotCode, message: err.message, hint: err.hint };
  return e;
}
