/**
 * Agent services (messages and files on port 1001, the pub/sub broker on 1002,
 * and whatever comes next) are rooms of their own above the daemon's data plane.
 * Each is a module that gets a ServiceContext (the daemon's public seam: ports,
 * dialing, trust, the local event feed, its own directory for storage) and
 * answers daemon calls by name (`methods()`), like `expose` does.
 *
 * Rules every service keeps (docs/SERVICES.md):
 * - The sender of anything is the authenticated stream's remote node
 *   (`stream.remoteAddress`), never a field in a message.
 * - Admission on top of the data plane's: `context.admits(node)` is true for
 *   trusted nodes, and for anyone only if the operator opened the service to
 *   strangers (`--open-services`, config `open_services`).
 * - A remote string never becomes a path; storage is bounded per peer and in total.
 * - An acknowledgement means durably stored (fsync + rename, or a committed
 *   SQLite transaction).
 */
import type { Address } from "../../protocol/address.ts";
import type { Logger } from "../../util/log.ts";
import type { EventBus } from "../event-bus.ts";
import type { PortBinding, StreamHandle } from "../local-node.ts";
import type { TaskReceipt } from "../../protocol/receipt.ts";

/** The services a daemon knows by name (for --no-<name>, --open-services and config). */
export const SERVICE_NAMES = ["messages", "files", "pubsub", "tasks"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface ServiceSettings {
  /** Services switched off (`--no-messages`, config `disabled_services`). */
  readonly disabled: ReadonlySet<ServiceName>;
  /** Services that also admit untrusted nodes (`--open-services`, config `open_services`). */
  readonly open: ReadonlySet<ServiceName>;
  /**
   * The config file's keys as text (`messages_quota`, `pubsub_queue`, ...): each
   * service reads and checks its own, and takes its defaults for the rest.
   */
  readonly config?: Readonly<Record<string, string>>;
}

export const DEFAULT_SERVICE_SETTINGS: ServiceSettings = Object.freeze({ disabled: new Set<ServiceName>(), open: new Set<ServiceName>() });

export interface ServiceContext {
  readonly address: Address;
  readonly log: Logger;
  /** The local event feed: publish what peers did (`message.received`, ...). */
  readonly events: EventBus;
  /** This service's own directory under PILOT_HOME (created 0700); null: keep everything in memory (tests). */
  readonly dir: string | null;
  /** The config file's keys as text (ServiceSettings.config); a service reads its own, absent keys take its defaults. */
  readonly config?: Readonly<Record<string, string>>;
  /** Binds a Pilot port; the data plane's trust rules apply before the service sees a stream. */
  listen(port: number, onAccept: (stream: StreamHandle) => void): PortBinding;
  dial(target: Address, port: number, options?: { timeoutMs?: number }): Promise<StreamHandle>;
  /** Full address, node id or hostname -> address (registry lookups as every command does). */
  resolveTarget(text: string): Promise<Address>;
  /** May `node` use this service (trusted, or the service is open to strangers)? */
  admits(node: Address): boolean;
  /** Is `node` trusted by this node right now? */
  trusts(node: Address): boolean;
  /**
   * Signs a task statement with this node's identity: only the bytes of
   * `resultStatementBytes` / `verdictStatementBytes` (src/protocol/receipt.ts) are
   * accepted, so a service can never make the node sign anything else.
   */
  signTaskStatement(statement: Uint8Array): Uint8Array;
  /** A node's Ed25519 identity key as this node pins it (its tunnel, else the registry). */
  peerKey(node: Address): Promise<Uint8Array>;
  /** Hands a receipt signed by both parties to the registry, which stores it once (idempotent). */
  submitReceipt(receipt: TaskReceipt): Promise<void>;
  /** A node's polo score (0-100) as the registry shows it to this node; null if it may not see the node, or the registry is away or refuses for now. Cached a minute. */
  reputationOf?(node: Address): Promise<number | null>;
}

export interface DaemonService {
  readonly name: ServiceName;
  /** Daemon calls this service answers (IPC `call` by method name). */
  methods(): Record<string, (params: Record<string, unknown>) => unknown>;
  /** Binds its ports, opens its storage. Called once the daemon is registered. */
  start(): void | Promise<void>;
  /** Closes its ports and storage; streams in flight are reset. */
  stop(): void | Promise<void>;
}

export type ServiceFactory = (context: ServiceContext) => DaemonService;

/** Parses a comma-separated list of service names ("messages,files"); throws RangeError naming the bad one. */
export function parseServiceList(text: string): Set<ServiceName> {
  const out = new Set<ServiceName>();
  for (const raw of text.split(",")) {
    const name = raw.trim();
    if (name === "") continue;
    if (!(SERVICE_NAMES as readonly string[]).includes(name)) throw new RangeError(`unknown service "${name}" (services: ${SERVICE_NAMES.join(", ")})`);
    out.add(name as ServiceName);
  }
  return out;
}
