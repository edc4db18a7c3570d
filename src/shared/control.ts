/**
 * Results of the daemon's trust and registry operations, as the daemon
 * answers them over IPC (src/daemon/node.ts) and the SDK returns them
 * (src/driver/driver.ts: `handshake`, `approve`, `pending`, ...). Field names
 * are the wire's (snake_case), the same the CLI's `--json` prints. Addresses
 * are `N:NNNN.HHHH.LLLL` strings; times are milliseconds since the epoch (the
 * CLI prints them as ISO 8601).
 */

/** `handshake`: asked `address` for trust. `trusted` when it had already asked us (mutual requests approve themselves). */
export interface HandshakeResult {
  readonly node_id: number;
  readonly address: string;
  readonly status: "pending" | "trusted";
}

/** `approve`: trust with `address` is established. */
export interface ApproveResult {
  readonly node_id: number;
  readonly address: string;
  readonly status: "trusted";
}

/** `reject`: the request from `address` is refused and removed. */
export interface RejectResult {
  readonly node_id: number;
  readonly address: string;
  readonly status: "rejected";
}

/** `untrust`: trust (or our request) is gone, its connections were reset. */
export interface UntrustResult {
  readonly node_id: number;
  readonly address: string;
  readonly status: "revoked";
  /** False while the registry has not confirmed it yet (the daemon keeps retrying; locally it is in force at once). */
  readonly registry_confirmed: boolean;
}

/** A node waiting for this node's answer. */
export interface PendingRequest {
  readonly node_id: number;
  readonly address: string;
  readonly hostname: string | null;
  readonly reason: string;
  /** When the request reached the registry (ms since the epoch). */
  readonly received_at: number;
}

/** A request this node sent that is not answered yet. */
export interface OutgoingRequest {
  readonly node_id: number;
  readonly address: string;
  readonly reason: string;
  /** ms since the epoch. */
  readonly sent_at: number;
}

/** `pending`: requests waiting for us (`pending`, counted by `total`) and ours waiting for others (`outgoing`). */
export interface PendingResult {
  readonly pending: readonly PendingRequest[];
  readonly outgoing: readonly OutgoingRequest[];
  readonly total: number;
}

export interface TrustedPeer {
  readonly node_id: number;
  readonly address: string;
  readonly hostname: string | null;
  /** When trust was established (ms since the epoch). */
  readonly since: number;
  /** A tunnel session with it is up right now. */
  readonly connected: boolean;
}

/** `trusted`: the nodes this node trusts (trust is always mutual). */
export interface TrustedResult {
  readonly trusted: readonly TrustedPeer[];
  readonly total: number;
}

/** `set_tags`: the tags the registry now holds for this node. */
export interface SetTagsResult {
  readonly node_id: number;
  readonly tags: readonly string[];
}

/** `set_hostname`: the hostname the registry now holds (null: none). */
export interface SetHostnameResult {
  readonly node_id: number;
  readonly hostname: string | null;
}

/** `set_visibility`: public nodes are visible to everyone, private ones only to nodes they trust. */
export interface SetVisibilityResult {
  readonly node_id: number;
  readonly public: boolean;
  readonly visibility: "public" | "private";
}

/** `events_recent`: the events the daemon keeps (the last 1000), oldest first. */
export interface RecentEventsResult<E> {
  readonly events: readonly E[];
  /** The newest event's seq (0: none yet). */
  readonly last_seq: number;
  /** The oldest event still kept, null when none is. */
  readonly oldest_seq: number | null;
  /** Random per daemon run: a seq from another run means nothing here. */
  readonly boot: string;
  /** Only the newest fitted in one answer. */
  readonly truncated?: true;
}

/** `events_publish`: an app's own event went into the feed. */
export interface PublishEventResult {
  readonly seq: number;
  readonly type: string;
}
