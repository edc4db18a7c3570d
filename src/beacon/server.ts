/**
 * The beacon: a UDP socket that tells a daemon the address its datagrams
 * arrive from (its public ip:port behind a NAT), signed by the rendezvous key
 * so that nobody on the path can feed it a false one.
 *
 * Datagrams outside 0x20-0x2F, malformed ones and anything but `discover` are
 * dropped silently (counted). A reply is never larger than the discover that
 * asked for it, and each source IP has a token bucket, so the beacon is
 * useless as a reflector.
 */
import {
  decodeBeaconMessage,
  discoverReplySignedBytes,
  encodeDiscoverReply,
  encodeDiscoverReplyBody,
  unmapIpv4,
} from "../protocol/beacon-message.ts";
import { TokenBuckets, type BucketConfig } from "../registry/limits.ts";
import { createLogger, type Logger } from "../util/log.ts";
import type { Signer } from "../registry/signer.ts";

export interface BeaconServerOptions {
  readonly host: string;
  readonly port: number;
  readonly signer: Signer;
  /** Discovers answered per source IP. Default 20/s, burst 40. */
  readonly perIp?: BucketConfig;
  readonly log?: Logger;
  readonly clock?: () => number;
}

export interface BeaconStats {
  answered: number;
  dropped: number;
  rateLimited: number;
}

export class BeaconServer {
  readonly stats: BeaconStats = { answered: 0, dropped: 0, rateLimited: 0 };
  private socket!: Bun.udp.Socket<"buffer">;
  private readonly buckets: TokenBuckets;
  private readonly clock: () => number;
  private readonly log: Logger;

  private constructor(private readonly options: BeaconServerOptions) {
    this.buckets = new TokenBuckets(options.perIp ?? { rate: 20, burst: 40 });
    this.clock = options.clock ?? Date.now;
    this.log = options.log ?? createLogger("beacon", { sink: () => {} });
  }

  static async start(options: BeaconServerOptions): Promise<BeaconServer> {
    const beacon = new BeaconServer(options);
    beacon.socket = await Bun.udpSocket({
      hostname: options.host,
      port: options.port,
      socket: {
        data: (_socket, data, port, address) => beacon.receive(data, port, address),
      },
    });
    return beacon;
  }

  get address(): { host: string; port: number } {
    return { host: this.socket.address.address, port: this.socket.port };
  }

  close(): void {
    this.socket.close();
  }

  private receive(data: Buffer, port: number, address: string): void {
    const message = decodeBeaconMessage(data);
    if (!message.ok || message.value.type !== "discover") {
      this.stats.dropped++;
      return;
    }
    const ip = unmapIpv4(address);
    if (!this.buckets.take(ip, this.clock())) {
      this.stats.rateLimited++;
      return;
    }
    try {
      const body = encodeDiscoverReplyBody({ nonce: message.value.nonce, ip, port });
      const reply = encodeDiscoverReply(body, this.options.signer.sign(discoverReplySignedBytes(body)));
      this.socket.send(reply, port, address);
      this.stats.answered++;
    } catch (e) {
      this.stats.dropped++;
      this.log.warn("beacon reply failed", { error: String(e), source_ip: ip });
    }
  }
}
