/**
 * In-memory secure channels for tests: two SecureChannel state machines
 * wired back to back, with identities that sign like the daemon does.
 */
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import {
  SecureChannel,
  signTranscriptHash,
  type SecureChannelEvent,
  type SecureChannelOptions,
} from "../../src/crypto/secure-channel.ts";
import { addressOf, type Address } from "../../src/protocol/address.ts";

export const CLIENT_ADDRESS: Address = addressOf(0, 0x11);
export const SERVER_ADDRESS: Address = addressOf(0, 0x22);
export const CLIENT_PORT = 49152;
export const SERVER_PORT = 443;

export interface Side {
  channel: SecureChannel;
  identity: Identity;
  /** Every event this side produced (signing answered automatically). */
  events: SecureChannelEvent[];
  /** Every byte this side put on the wire. */
  wire: Uint8Array[];
}

export interface PairOptions {
  clientIdentity?: Identity;
  serverIdentity?: Identity;
  /** The key the client pins for the server (default: the server's real key). */
  serverKeyAtClient?: Uint8Array;
  clientKeyAtServer?: Uint8Array;
  /** Who signs for each side (default: its own identity). */
  clientSigner?: Identity;
  serverSigner?: Identity;
  /** Override the endpoints each side believes in (to model a tampered transcript). */
  clientView?: Partial<Pick<SecureChannelOptions, "client" | "server">>;
  serverView?: Partial<Pick<SecureChannelOptions, "client" | "server">>;
}

export interface Pair {
  client: Side;
  server: Side;
  /** Moves bytes both ways (answering "sign" events) until nothing moves. */
  pump(): void;
}

export function makePair(options: PairOptions = {}): Pair {
  const clientIdentity = options.clientIdentity ?? generateIdentity();
  const serverIdentity = options.serverIdentity ?? generateIdentity();
  const endpoints = { client: { address: CLIENT_ADDRESS, port: CLIENT_PORT }, server: { address: SERVER_ADDRESS, port: SERVER_PORT } };
  const client: Side = {
    identity: clientIdentity,
    events: [],
    wire: [],
    channel: new SecureChannel({ role: "client", ...endpoints, ...options.clientView, peerIdentityKey: options.serverKeyAtClient ?? serverIdentity.publicKey }),
  };
  const server: Side = {
    identity: serverIdentity,
    events: [],
    wire: [],
    channel: new SecureChannel({ role: "server", ...endpoints, ...options.serverView, peerIdentityKey: options.clientKeyAtServer ?? clientIdentity.publicKey }),
  };
  const signers = new Map<Side, Identity>([
    [client, options.clientSigner ?? clientIdentity],
    [server, options.serverSigner ?? serverIdentity],
  ]);
  const drainEvents = (side: Side): boolean => {
    let moved = false;
    let e: SecureChannelEvent | undefined;
    while ((e = side.channel.pollEvent()) !== undefined) {
      side.events.push(e);
      if (e.type === "sign") {
        side.channel.provideSignature(signTranscriptHash(signers.get(side)!, e.hash));
        moved = true;
      }
    }
    return moved;
  };
  const pump = () => {
    for (let round = 0; round < 100; round++) {
      let moved = drainEvents(client) || drainEvents(server);
      for (const [from, to] of [
        [client, server],
        [server, client],
      ] as const) {
        const out = from.channel.takeOutput();
        if (out.length > 0) {
          from.wire.push(out);
          to.channel.receive(out);
          moved = true;
        }
      }
      moved = drainEvents(client) || drainEvents(server) || moved;
      if (!moved) return;
    }
    throw new Error("pump did not settle");
  };
  client.channel.start();
  return { client, server, pump };
}

/** The plaintext a side received, joined. */
export function received(side: Side): string {
  drain(side);
  return side.events
    .filter((e): e is { type: "data"; data: Uint8Array } => e.type === "data")
    .map((e) => new TextDecoder().decode(e.data))
    .join("");
}

export function failure(side: Side): string | undefined {
  drain(side);
  const f = side.events.find((e) => e.type === "failed");
  return f && f.type === "failed" ? f.error.code : undefined;
}

/** Moves events the channel holds into `side.events` (without answering "sign"). */
function drain(side: Side): void {
  let e: SecureChannelEvent | undefined;
  while ((e = side.channel.pollEvent()) !== undefined) side.events.push(e);
}
