/**
 * How much the messages and files services keep, and for whom: config keys
 * (`pilot config --set messages_quota=128MiB`), their bounds and defaults.
 * Per peer first, then in total; the CLI checks values against the same table.
 */
import { formatByteSize, parseByteSize } from "../../../util/byte-size.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

export interface LimitSpec {
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly description: string;
}

export const EXCHANGE_LIMIT_KEYS = {
  message_max_size: { default: 1 * MiB, min: 1 * KiB, max: 64 * MiB, description: "largest message this node accepts or sends, e.g. 1MiB (default 1MiB)" },
  messages_quota: { default: 64 * MiB, min: 1 * MiB, max: 1 * TiB, description: "inbox bytes one peer may fill (and outbox bytes queued for one peer), e.g. 64MiB (default 64MiB)" },
  messages_quota_total: { default: 256 * MiB, min: 1 * MiB, max: 1 * TiB, description: "inbox bytes from all peers together (and outbox bytes in all), e.g. 256MiB (default 256MiB)" },
  files_quota: { default: 1 * GiB, min: 1 * MiB, max: 64 * TiB, description: "bytes of received and partial files one peer may hold, e.g. 1GiB (default 1GiB)" },
  files_quota_total: { default: 4 * GiB, min: 1 * MiB, max: 64 * TiB, description: "bytes of received and partial files from all peers together, e.g. 4GiB (default 4GiB)" },
  messages_memory_total: { default: 32 * MiB, min: 1 * MiB, max: 4 * GiB, description: "memory for messages still arriving, all peers together; past it a message is refused busy and its sender retries, e.g. 32MiB (default 32MiB)" },
  files_memory_total: { default: 32 * MiB, min: 1 * MiB, max: 4 * GiB, description: "memory for received file data waiting for the disk, all transfers together; past it transfers pause (their senders wait), e.g. 32MiB (default 32MiB)" },
} as const satisfies Record<string, LimitSpec>;

export type ExchangeLimitKey = keyof typeof EXCHANGE_LIMIT_KEYS;

export interface ExchangeLimits {
  readonly messageMaxSize: number;
  readonly messagesQuota: number;
  readonly messagesQuotaTotal: number;
  readonly filesQuota: number;
  readonly filesQuotaTotal: number;
  /** Memory held by messages being assembled, all peers together (a message is refused `busy` past it). */
  readonly messagesMemoryTotal: number;
  /** Memory held by received file data not yet written, all transfers together (transfers pause past it). */
  readonly filesMemoryTotal: number;
}

/**
 * The limits in force from the config's text (`{messages_quota: "128MiB"}`): configured
 * values, defaults for the rest. Throws RangeError on a value that is not a size within its bounds.
 */
export function exchangeLimits(config: Readonly<Record<string, string>> = {}): ExchangeLimits {
  const pick = (key: ExchangeLimitKey) => {
    const spec: LimitSpec = EXCHANGE_LIMIT_KEYS[key];
    const text = config[key];
    if (text === undefined) return spec.default;
    const v = parseByteSize(text);
    if (!(v >= spec.min && v <= spec.max)) throw new RangeError(`${key} must be a size from ${formatByteSize(spec.min)} to ${formatByteSize(spec.max)}, got "${text}"`);
    return v;
  };
  return {
    messageMaxSize: pick("message_max_size"),
    messagesQuota: pick("messages_quota"),
    messagesQuotaTotal: pick("messages_quota_total"),
    filesQuota: pick("files_quota"),
    filesQuotaTotal: pick("files_quota_total"),
    messagesMemoryTotal: pick("messages_memory_total"),
    filesMemoryTotal: pick("files_memory_total"),
  };
}
