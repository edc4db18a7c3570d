/**
 * The fourth path tier, `relay-tcp`: tunnel frames through the rendezvous's
 * relay over WebSocket (src/beacon/ws-relay.ts) when UDP does not work here
 * (a firewall that drops it, maybe passing only TCP 443 through an HTTP proxy).
 *
 *   const link = new RendezvousLinks({ udp: beaconClient, ws: { url, ... }, log });
 *   link.start();            // UDP beacon at once; the WebSocket only if UDP stays silent
 *   // the data plane uses it as its RendezvousLink (paths.ts): available, relay(), relayKind
 *
 * Policy: the UDP beacon is tried first. When it has not answered for
 * `fallbackAfterMs` (at start, or after its registration lapsed), the link
 * opens the WebSocket, registers on it (the same signed register as over UDP,
 * src/beacon/client.ts runs unchanged over it) and relayed frames go there:
 * every relayed peer's path shows `relay-tcp`. Meanwhile the UDP beacon is
 * asked again every `udpRetryMs`; the moment it answers, relayed frames go
 * over UDP again (`relay`), every peer gets a probing round and a punch
 * request (so it can move on to a direct or punched path), and the WebSocket
 * is closed `releaseAfterMs` later (frames the rendezvous already sent down it
 * still arrive). Only the endpoint of the peers changes, never their tunnel
 * session, so open streams carry on.
 *
 * `HTTPS_PROXY` / `https_proxy` (HTTP CONNECT, basic auth from the URL's
 * user:password) is honoured unless `NO_PROXY` / `no_proxy` names the host.
 *
 * Trust: nothing that arrives on the WebSocket is trusted more than a UDP
 * datagram from the beacon: registrations are acknowledged under the pinned
 * rendezvous key, and relayed frames are accepted only if they authenticate
 * under the session of the node the rendezvous names (data-plane.ts).
 */
import { BeaconClient, type BeaconEvents } from "../beacon/client.ts";
import type { Signer } from "../registry/signer.ts";
import type { Logger } from "../util/log.ts";
import type { PathKind, RendezvousLink } from "./paths.ts";
import { WS_RELAY_PATH } from "../beacon/ws-relay.ts";

export interface WsRelaySettings {
  /** ws://HOST:PORT or wss://HOST:PORT of the rendezvous's WebSocket relay. */
  readonly url: string;
  /** http://[user:password@]HOST:PORT of an HTTP CONNECT proxy; default: from the environment. */
  readonly proxy?: string | null;
  /** Extra trusted CA certificates (PEM) for wss:// with a private CA; default: the system's. */
  readonly ca?: string;
}

export interface RendezvousLinksOptions {
  readonly udp: BeaconClient | null;
  readonly ws: WsRelaySettings | null;
  readonly nodeId: number;
  readonly identity: Signer;
  /** The rendezvous key pinned from the registry. */
  readonly beaconKey: Uint8Array;
  readonly log: Logger;
  readonly keepaliveMs?: number;
  /** No UDP beacon answer for this long: open the WebSocket. Default 1 s. */
  readonly fallbackAfterMs?: number;
  /** While on the WebSocket, ask the UDP beacon again this often. Default 2 s. */
  readonly udpRetryMs?: number;
  /** UDP works again: close the WebSocket this much later. Default 10 s. */
  readonly releaseAfterMs?: number;
  /** Queued bytes on the WebSocket beyond which relayed frames are dropped, as a full UDP socket would (default 256 KiB: a deeper queue only adds delay). */
  readonly maxBufferedBytes?: number;
}

const TICK_MS = 200;

/** The WebSocket URL of the relay: the path is added when the URL has none. Throws on anything but ws:// or wss://. */
export function relayWsUrl(text: string): URL {
  const url = new URL(text);
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new Error(`${text} is not a ws:// or wss:// URL`);
  if (url.username || url.password) throw new Error(`${text}: the relay URL carries no credentials (nodes authenticate with their keys)`);
  if (url.pathname === "/" || url.pathname === "") url.pathname = WS_RELAY_PATH;
  return url;
}

/** The proxy for `url` from HTTPS_PROXY / https_proxy, unless NO_PROXY / no_proxy covers its host. */
export function proxyFromEnv(url: URL, env: Record<string, string | undefined> = process.env): string | null {
  const proxy = env.HTTPS_PROXY || env.https_proxy;
  if (!proxy) return null;
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const noProxy = (env.NO_PROXY || env.no_proxy || "").split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const entry of noProxy) {
    if (entry === "*") return null;
    const bare = entry.replace(/^\*?\./, "").replace(/:\d+$/, "");
    if (host === bare || host.endsWith(`.${bare}`)) return null;
  }
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(proxy) ? proxy : `http://${proxy}`;
}

/** Where the WebSocket relay is shown (`pilot peers` ENDPOINT): the URL without its path. */
function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

/** One WebSocket to the relay, with a BeaconClient registering over it. */
class WsRelayConnection {
  private socket: WebSocket | null = null;
  private client: BeaconClient | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retryDelay = 500;
  private wanted = false;
  /** Relayed frames dropped because the socket's queue was full. */
  dropped = 0;

  constructor(
    private readonly url: URL,
    private readonly proxy: string | null,
    private readonly ca: string | undefined,
    private readonly options: RendezvousLinksOptions,
    private readonly events: BeaconEvents,
  ) {}

  get available(): boolean {
    return this.client?.available === true && this.socket?.readyState === WebSocket.OPEN;
  }

  get open(): boolean {
    return this.wanted;
  }

  start(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.retryDelay = 500;
    this.connect();
  }

  stop(): void {
    this.wanted = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown();
  }

  relay(dest: number, frame: Uint8Array): boolean {
    if (!this.available) return false;
    if (this.socket!.bufferedAmount > (this.options.maxBufferedBytes ?? 256 * 1024)) {
      this.dropped++;
      return false;
    }
    return this.client!.relay(dest, frame);
  }

  private connect(): void {
    const log = this.options.log;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url.href, { ...(this.proxy ? { proxy: this.proxy } : {}), ...(this.ca ? { tls: { ca: this.ca } } : {}) } as any);
    } catch (e) {
      log.warn("cannot open the relay over WebSocket", { url: displayUrl(this.url), error: (e as Error).message });
      return this.retry();
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    const client = new BeaconClient({
      nodeId: this.options.nodeId,
      identity: this.options.identity,
      beaconKey: this.options.beaconKey,
      // A stand-in address: every message on this socket is the rendezvous's.
      beacon: { host: "ws-relay", port: 0 },
      send: (d) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(d);
      },
      log: log.child("ws"),
      ...(this.options.keepaliveMs ? { keepaliveMs: this.options.keepaliveMs } : {}),
    });
    client.events = {
      registered: (observed, changed) => {
        this.retryDelay = 500;
        this.events.registered(observed, changed);
      },
      lost: () => this.events.lost(),
      punch: () => {},
      relayed: (source, frame) => this.events.relayed(source, frame),
    };
    this.client = client;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      log.info("connected to the relay over WebSocket", { url: displayUrl(this.url), ...(this.proxy ? { proxy: redact(this.proxy) } : {}) });
      client.start();
    };
    socket.onmessage = (ev) => {
      if (this.socket !== socket || !(ev.data instanceof ArrayBuffer)) return;
      client.receive(new Uint8Array(ev.data), client.host, client.port);
    };
    socket.onerror = () => {};
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      const wasAvailable = client.available;
      this.teardown();
      if (this.wanted) {
        log.warn("the relay over WebSocket closed", { url: displayUrl(this.url), code: ev.code, ...(ev.reason ? { reason: ev.reason } : {}) });
        this.retry();
      }
      if (wasAvailable) this.events.lost();
    };
  }

  private teardown(): void {
    this.client?.stop();
    this.client = null;
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState !== WebSocket.CLOSED) {
      try {
        socket.close();
      } catch {
        // closing anyway
      }
    }
  }

  private retry(): void {
    if (!this.wanted || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.wanted && !this.socket) this.connect();
    }, this.retryDelay);
    this.retryTimer.unref?.();
    this.retryDelay = Math.min(this.retryDelay * 2, 15_000);
  }
}

function redact(proxy: string): string {
  try {
    const u = new URL(proxy);
    if (u.password) u.password = "***";
    return u.href;
  } catch {
    return "(unparsable)";
  }
}

/**
 * The daemon's rendezvous link: the UDP beacon, and the WebSocket relay as
 * its fallback. The data plane sees one RendezvousLink whose relay goes over
 * UDP when the beacon answers there, else over the WebSocket (`relayKind`).
 */
export class RendezvousLinks implements RendezvousLink {
  events: BeaconEvents = { registered() {}, lost() {}, punch() {}, relayed() {} };
  readonly udp: BeaconClient | null;
  private readonly ws: WsRelayConnection | null;
  private readonly wsUrl: URL | null;
  private readonly fallbackAfterMs: number;
  private readonly udpRetryMs: number;
  private readonly releaseAfterMs: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Since when the UDP beacon has been silent (no registration), or null while it answers. */
  private udpSilentSince: number | null = null;
  private udpBackSince: number | null = null;
  private lastUdpRetry = 0;
  private relayedOverWs = false;

  constructor(private readonly options: RendezvousLinksOptions) {
    this.udp = options.udp;
    this.fallbackAfterMs = options.fallbackAfterMs ?? 1000;
    this.udpRetryMs = options.udpRetryMs ?? 2000;
    this.releaseAfterMs = options.releaseAfterMs ?? 10_000;
    this.wsUrl = options.ws ? relayWsUrl(options.ws.url) : null;
    const proxy = this.wsUrl ? (options.ws!.proxy !== undefined ? options.ws!.proxy : proxyFromEnv(this.wsUrl)) : null;
    this.ws = this.wsUrl ? new WsRelayConnection(this.wsUrl, proxy, options.ws!.ca, options, this.wsEvents()) : null;
    if (this.udp) this.udp.events = this.udpEvents();
  }

  // ---- RendezvousLink ---------------------------------------------------------------

  get available(): boolean {
    return this.udp?.available === true || this.ws?.available === true;
  }

  /** Registered with the beacon over UDP (punching works). */
  get udpAvailable(): boolean {
    return this.udp?.available === true;
  }

  /** Registered on the WebSocket relay. */
  get tcpAvailable(): boolean {
    return this.ws?.available === true;
  }

  get relayKind(): PathKind {
    return this.udp?.available === true || !this.ws?.available ? "relay" : "relay-tcp";
  }

  get endpoint(): string {
    if (this.relayKind === "relay-tcp") return displayUrl(this.wsUrl!);
    return this.udp?.endpoint ?? (this.wsUrl ? displayUrl(this.wsUrl) : "beacon");
  }

  get observed(): string | null {
    return this.udp?.observed ?? null;
  }

  /** The relay over WebSocket, for `pilot status`: its URL and whether relayed frames go there now. */
  get tcpRelay(): { url: string; connected: boolean; in_use: boolean } | null {
    return this.wsUrl ? { url: displayUrl(this.wsUrl), connected: this.tcpAvailable, in_use: this.relayKind === "relay-tcp" } : null;
  }

  relay(dest: number, frame: Uint8Array): boolean {
    if (this.udp?.available) return this.udp.relay(dest, frame);
    return this.ws?.relay(dest, frame) ?? false;
  }

  requestPunch(target: number): void {
    if (this.udp?.available) this.udp.requestPunch(target);
  }

  // ---- what BeaconClient offered the daemon -----------------------------------------

  receive(datagram: Uint8Array, host: string, port: number): "ok" | "foreign" | "dropped" {
    return this.udp ? this.udp.receive(datagram, host, port) : "foreign";
  }

  start(): void {
    this.udp?.start();
    const now = performance.now();
    this.udpSilentSince = now;
    // No UDP beacon at all: the WebSocket is the only relay.
    if (!this.udp) this.ws?.start();
    if (this.ws && this.udp && !this.timer) {
      this.timer = setInterval(() => this.tick(), TICK_MS);
      this.timer.unref?.();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.udp?.stop();
    this.ws?.stop();
  }

  /** Resolves once some relay is registered (true), or false after `timeoutMs`. */
  async waitRegistered(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.available && performance.now() < deadline) await Bun.sleep(10);
    return this.available;
  }

  // ---- the policy -----------------------------------------------------------------------

  private tick(): void {
    const now = performance.now();
    const udp = this.udp!;
    const ws = this.ws!;
    if (udp.available) {
      this.udpSilentSince = null;
      this.udpBackSince ??= now;
      if (ws.open && now - this.udpBackSince >= this.releaseAfterMs) {
        this.options.log.info("UDP works again; closing the relay over WebSocket", { url: displayUrl(this.wsUrl!) });
        ws.stop();
      }
      return;
    }
    this.udpBackSince = null;
    this.udpSilentSince ??= now;
    if (!ws.open && now - this.udpSilentSince >= this.fallbackAfterMs) {
      this.options.log.info("no answer from the beacon over UDP; relaying over WebSocket (TCP) while UDP is retried", { url: displayUrl(this.wsUrl!), beacon: udp.endpoint });
      ws.start();
    }
    // Keep asking over UDP: the firewall may open, or the network change.
    if (ws.open && now - this.lastUdpRetry >= this.udpRetryMs) {
      this.lastUdpRetry = now;
      udp.refresh();
    }
  }

  private udpEvents(): BeaconEvents {
    return {
      registered: (observed, changed) => {
        this.udpSilentSince = null;
        // The relay moves from the WebSocket to UDP: every peer probes and punches again.
        const fromWs = this.relayedOverWs;
        this.relayedOverWs = false;
        this.events.registered(observed, changed || fromWs);
      },
      lost: () => {
        this.udpSilentSince = performance.now();
        this.events.lost();
      },
      punch: (peer, endpoint, requested) => this.events.punch(peer, endpoint, requested),
      relayed: (source, frame) => this.events.relayed(source, frame),
    };
  }

  private wsEvents(): BeaconEvents {
    return {
      registered: (_observed, _changed) => {
        if (!this.udp?.available) this.relayedOverWs = true;
        this.events.registered(this.udp?.observed ?? "", false);
      },
      lost: () => {
        this.relayedOverWs = false;
        this.events.lost();
      },
      punch: () => {},
      relayed: (source, frame) => this.events.relayed(source, frame),
    };
  }
}
