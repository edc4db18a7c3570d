/**
 * The registry over the rendezvous's WebSocket port, for a daemon whose
 * network lets through only TCP 443 (maybe only through an HTTP proxy). It is
 * a transport, nothing more: the WebSocket carries the registry's own byte
 * stream (length-prefixed JSON frames, signed requests and answers, the
 * pinned registry key), so RegistryClient runs unchanged over it
 * (`RegistryClientOptions.connect`).
 *
 *   const connect = registryConnector({ relayWs, tcp: { host, port }, proxy });
 *   RegistryClient.connect({ host, port, ..., connect });
 *
 * Policy: with an HTTP proxy configured (HTTPS_PROXY) the WebSocket is used at
 * once (through the proxy); otherwise plain TCP is tried first, and once a TCP
 * connection fails or does not connect within `tcpTimeoutMs`, every later
 * connection uses the WebSocket (RegistryClient retries on its own).
 */
import { EventEmitter } from "node:events";
import { connect as tcpConnect, type Socket } from "node:net";
import { WS_REGISTRY_PATH } from "../beacon/ws-relay.ts";
import type { Logger } from "../util/log.ts";
import { proxyFromEnv, relayWsUrl } from "./ws-relay-path.ts";

export interface RegistryConnectorOptions {
  /** The rendezvous's WebSocket URL (as for --relay-ws); the registry path is put in its place. */
  readonly relayWs: string;
  readonly tcp: { readonly host: string; readonly port: number };
  /** The HTTP proxy; default: HTTPS_PROXY / https_proxy (NO_PROXY respected). */
  readonly proxy?: string | null;
  /** Extra trusted CA certificates (PEM) for wss:// with a private CA. */
  readonly ca?: string;
  readonly tcpTimeoutMs?: number;
  readonly log?: Logger;
}

/** The URL of the registry's WebSocket on the same port as the relay. */
export function registryWsUrl(relayWs: string): URL {
  const url = relayWsUrl(relayWs);
  url.pathname = WS_REGISTRY_PATH;
  return url;
}

export function registryConnector(options: RegistryConnectorOptions): () => Socket {
  const url = registryWsUrl(options.relayWs);
  const proxy = options.proxy !== undefined ? options.proxy : proxyFromEnv(url);
  let overWs = proxy !== null;
  const tcpTimeoutMs = options.tcpTimeoutMs ?? 2000;
  return () => {
    if (overWs) return new WsStreamSocket(url, proxy, options.ca) as unknown as Socket;
    const socket = tcpConnect({ host: options.tcp.host, port: options.tcp.port, noDelay: true });
    const giveUp = () => {
      if (overWs) return;
      overWs = true;
      options.log?.info("the registry does not answer over TCP; using the WebSocket", { registry: `${options.tcp.host}:${options.tcp.port}`, url: `${url.protocol}//${url.host}` });
    };
    const timer = setTimeout(() => {
      if (!socket.connecting) return;
      giveUp();
      socket.destroy(new Error(`no TCP connection to the registry within ${tcpTimeoutMs} ms`));
    }, tcpTimeoutMs);
    timer.unref?.();
    socket.once("connect", () => clearTimeout(timer));
    socket.once("error", () => {
      clearTimeout(timer);
      if (socket.bytesRead === 0) giveUp();
    });
    return socket;
  };
}

/** A byte stream over a WebSocket, shaped as the net.Socket RegistryClient uses (write, destroy; data, error, close). */
class WsStreamSocket extends EventEmitter {
  private readonly ws: WebSocket;
  private queue: Uint8Array[] = [];
  destroyed = false;

  constructor(url: URL, proxy: string | null, ca: string | undefined) {
    super();
    this.ws = new WebSocket(url.href, { ...(proxy ? { proxy } : {}), ...(ca ? { tls: { ca } } : {}) } as any);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      for (const chunk of this.queue) this.ws.send(chunk);
      this.queue = [];
    };
    this.ws.onmessage = (e) => {
      if (!this.destroyed && e.data instanceof ArrayBuffer) this.emit("data", Buffer.from(e.data));
    };
    this.ws.onerror = () => {
      if (!this.destroyed) this.emit("error", new Error(`WebSocket to ${url.protocol}//${url.host} failed`));
    };
    this.ws.onclose = () => this.finish();
  }

  write(data: Uint8Array | string): boolean {
    if (this.destroyed) return false;
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
    else this.queue.push(bytes);
    return true;
  }

  destroy(): this {
    try {
      this.ws.close();
    } catch {
      // closing anyway
    }
    this.finish();
    return this;
  }

  private finish(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.queue = [];
    this.emit("close", false);
  }
}
