/**
 * The user's settings file, `$PILOT_HOME/config.json`: defaults for flags the
 * user does not want to repeat (registry, beacon, listen, hostname, ...).
 * Precedence everywhere: command-line flag > environment > config file > built-in default.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../util/atomic-file.ts";
import { pilotPaths } from "../util/paths.ts";
import { fileError } from "./errors.ts";
import { EXCHANGE_LIMIT_KEYS } from "../daemon/services/exchange/limits.ts";
import { PUBSUB_CONFIG_KEYS } from "../daemon/services/pubsub/limits.ts";

export const CONFIG_KEYS = {
  registry: "registry address HOST:PORT (default 127.0.0.1:9000)",
  beacon: "beacon address HOST:PORT, several of one deployment (A:9001,B:9001: the daemon fails over between them), or 'off' (default: the registry's host, port 9001)",
  relay_ws: "the rendezvous's relay over WebSocket, wss://HOST[:PORT], used on its own when UDP does not work (default: none)",
  listen: "the daemon's UDP tunnel address HOST:PORT (default [::]:0, any free port on IPv4 and IPv6)",
  hostname: "hostname to claim when the daemon starts",
  public: "true to make this node visible to everyone (default false: private)",
  tags: "comma-separated tags to set when the daemon starts",
  log_level: "daemon log level: debug, info, warn, error",
  log_max_size: "rotate the daemon's log file ($PILOT_HOME/pilot.log) at this size, e.g. 10MiB (default 10MiB; 16KiB to 1GiB)",
  log_keep: "rotated log files kept, pilot.log.1 .. pilot.log.N (default 3; 0 to 20)",
  buffer_budget: "memory for all stream buffers together, e.g. 64MiB (default 64MiB; a quarter per trusted peer)",
  zero_window_timeout: "close a stream whose peer stops reading for this long, e.g. 120s (default 120s)",
  disabled_services: "agent services to switch off, comma-separated: messages, files, pubsub, tasks (default: none)",
  open_services: "agent services that also accept untrusted nodes, comma-separated (default: none; trusted peers only)",
  metrics: "serve Prometheus metrics at http://IP:PORT/metrics, e.g. 127.0.0.1:9100 (default: none; 'off' for none)",
  webhook: "POST every local event (pilot events) as signed JSON to this http(s) URL",
  webhook_secret: "the webhook's HMAC-SHA256 key (default: generated into $PILOT_HOME/webhook_secret)",
  dashboard: "the local dashboard's loopback HOST:PORT, or 'off' (default 127.0.0.1, any free port; pilot dashboard prints its URL)",
  message_max_size: EXCHANGE_LIMIT_KEYS.message_max_size.description,
  messages_quota: EXCHANGE_LIMIT_KEYS.messages_quota.description,
  messages_quota_total: EXCHANGE_LIMIT_KEYS.messages_quota_total.description,
  files_quota: EXCHANGE_LIMIT_KEYS.files_quota.description,
  files_quota_total: EXCHANGE_LIMIT_KEYS.files_quota_total.description,
  messages_memory_total: EXCHANGE_LIMIT_KEYS.messages_memory_total.description,
  files_memory_total: EXCHANGE_LIMIT_KEYS.files_memory_total.description,
  ...PUBSUB_CONFIG_KEYS,
  tasks_max_per_peer: "unfinished tasks one submitter may have on this node (default 16; read live by the task service)",
  tasks_max_total: "unfinished tasks this node holds in all (default 256; untrusted submitters together a quarter)",
  tasks_min_score: "take tasks only from nodes whose polo score is at least N, 0-100 (default 0: no minimum)",
  mcp_allow_trust_approval: "true to let an LLM agent approve trust requests through pilot mcp (default false; read at each call)",
} as const;
export type ConfigKey = keyof typeof CONFIG_KEYS;
export type Config = Partial<Record<ConfigKey, string>>;

export const DEFAULT_REGISTRY = "127.0.0.1:9000";

export function configPath(): string {
  return pilotPaths().config;
}

export function readConfig(): Config {
  const path = configPath();
  if (!existsSync(path)) return {};
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw fileError(`${path} is not valid JSON: ${(e as Error).message}`, `fix it, or delete it to start over`);
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) throw fileError(`${path} must hold a JSON object`);
  const out: Config = {};
  for (const [k, v] of Object.entries(data)) if (k in CONFIG_KEYS && (typeof v === "string" || typeof v === "boolean")) out[k as ConfigKey] = String(v);
  return out;
}

export function writeConfig(config: Config): void {
  writeFileAtomic(configPath(), JSON.stringify(config, null, 2) + "\n", 0o600);
}
