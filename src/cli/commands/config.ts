/**
 * `pilot config`: show, set and unset the defaults in `$PILOT_HOME/config.json`
 * (read by `pilot daemon start`). Every value is checked before it is written,
 * so a bad value fails here rather than at the next start.
 */
import type { CommandSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { CONFIG_KEYS, configPath, readConfig, writeConfig, type Config, type ConfigKey } from "../config.ts";
import { table } from "../format.ts";

const KEY_LIST = Object.keys(CONFIG_KEYS).join(", ");

function hostPort(value: string, key: string, allowPortZero: boolean): string {
  const m = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):([0-9]{1,5})$/.exec(value);
  const port = m ? Number(m[1]) : NaN;
  if (!m || port > 65535 || (port === 0 && !allowPortZero)) {
    throw new CliError("invalid_argument", `${key} "${value}" is not HOST:PORT`, `for example: pilot config --set ${key}=${key === "listen" ? "0.0.0.0:4000" : "203.0.113.5:9000"}`);
  }
  return value;
}

/** The value as it will be stored, or invalid_argument saying what a good one looks like. */
async function checkValue(key: ConfigKey, value: string): Promise<string> {
  switch (key) {
    case "registry":
      // One registry, or several of one deployment: "A:9000,B:9000" (docs/DEPLOYMENT.md).
      if (value.split(",").length > 8) throw new CliError("invalid_argument", "registry names more than 8 registries", "for example: pilot config --set registry=10.0.0.1:9000,10.0.0.2:9000");
      for (const one of value.split(",")) hostPort(one.trim(), key, false);
      return value;
    case "beacon":
      // "off", one beacon, or several of one deployment: "A:9001,B:9001" (the daemon fails over between them).
      if (value === "off") return value;
      if (value.split(",").length > 8) throw new CliError("invalid_argument", "beacon names more than 8 beacons", "for example: pilot config --set beacon=10.0.0.1:9001,10.0.0.2:9001");
      for (const one of value.split(",")) hostPort(one.trim(), key, false);
      return value;
    case "listen":
      return hostPort(value, key, true);
    case "public":
    case "mcp_allow_trust_approval":
      if (value !== "true" && value !== "false") throw new CliError("invalid_argument", `${key} must be true or false, got "${value}"`, `for example: pilot config --set ${key}=true`);
      return value;
    case "log_level":
      if (!["debug", "info", "warn", "error"].includes(value)) throw new CliError("invalid_argument", `log_level must be debug, info, warn or error, got "${value}"`);
      return value;
    case "log_max_size":
    case "log_keep": {
      const { logRotationFrom } = await import("./logs.ts");
      logRotationFrom({ [key]: value });
      return value;
    }
    case "hostname": {
      const { checkHostname } = await import("../../registry/rules.ts");
      const c = checkHostname(value);
      if (!c.ok) throw new CliError("invalid_argument", c.message, "for example: pilot config --set hostname=agent-a");
      return c.value;
    }
    case "tags": {
      const { checkTags } = await import("../../registry/rules.ts");
      const c = checkTags(value.split(",").map((t) => t.trim()).filter(Boolean));
      if (!c.ok) throw new CliError("invalid_argument", c.message, "for example: pilot config --set tags=nlp,summarizer");
      return c.value.join(",");
    }
    case "buffer_budget": {
      const { byteSizeOption } = await import("../args.ts");
      byteSizeOption(value, "buffer_budget", { min: 1 << 20, max: 64 * 2 ** 30 });
      return value;
    }
    case "disabled_services":
    case "open_services": {
      const { parseServiceList } = await import("../../daemon/services/service.ts");
      try {
        return [...parseServiceList(value)].join(",");
      } catch (e) {
        throw new CliError("invalid_argument", (e as Error).message, `for example: pilot config --set ${key}=files`);
      }
    }
    case "message_max_size":
    case "messages_quota":
    case "messages_quota_total":
    case "files_quota":
    case "files_quota_total":
    case "messages_memory_total":
    case "files_memory_total": {
      const { byteSizeOption } = await import("../args.ts");
      const { EXCHANGE_LIMIT_KEYS } = await import("../../daemon/services/exchange/limits.ts");
      byteSizeOption(value, key, EXCHANGE_LIMIT_KEYS[key]);
      return value;
    }
    case "tasks_max_per_peer":
    case "tasks_max_total": {
      const max = key === "tasks_max_per_peer" ? 10_000 : 100_000;
      const min = 1;
      const n = /^[0-9]{1,10}$/.test(value) ? Number(value) : NaN;
      if (!(n >= min && n <= max)) throw new CliError("invalid_argument", `${key} must be a whole number from ${min} to ${max}, got "${value}"`, `for example: pilot config --set ${key}=32`);
      return String(n);
    }
    case "tasks_min_score": {
      const { parseScoreThreshold } = await import("../../registry/reputation.ts");
      try {
        return String(parseScoreThreshold(value));
      } catch (e) {
        throw new CliError("invalid_argument", `tasks_min_score: ${(e as Error).message}`, "for example: pilot config --set tasks_min_score=20");
      }
    }
    case "zero_window_timeout": {
      const { durationOption } = await import("../args.ts");
      durationOption(value, "zero_window_timeout");
      return value;
    }
    case "metrics": {
      if (value === "off") return value;
      const { parseMetricsAddress, METRICS_EXAMPLE } = await import("../../util/metrics-listener.ts");
      try {
        parseMetricsAddress(value);
      } catch (e) {
        throw new CliError("invalid_argument", `metrics: ${(e as Error).message}`, `for example: pilot config --set metrics=${METRICS_EXAMPLE}`);
      }
      return value.trim();
    }
    case "webhook": {
      const { checkWebhookUrl } = await import("../../daemon/webhooks.ts");
      const c = checkWebhookUrl(value);
      if (!c.ok) throw new CliError("invalid_argument", c.message, "for example: pilot config --set webhook=https://hooks.example.com/pilot");
      return c.url;
    }
    case "webhook_secret":
      if (!/^[\x21-\x7e]{16,256}$/.test(value)) {
        throw new CliError("invalid_argument", "webhook_secret must be 16 to 256 printable characters without spaces", "or unset it and use the generated one: pilot config --unset webhook_secret");
      }
      return value;
    case "dashboard": {
      if (value === "off") return value;
      hostPort(value, key, true);
      const { isLoopbackHost } = await import("../../util/web-page.ts");
      const host = value.slice(0, value.lastIndexOf(":")).replace(/^\[|\]$/g, "");
      if (!isLoopbackHost(host === "localhost" ? "127.0.0.1" : host)) throw new CliError("invalid_argument", `dashboard "${value}": the dashboard listens on loopback only`, "for example: pilot config --set dashboard=127.0.0.1:8484 (or dashboard=off)");
      return value;
    }
    default: {
      if (!key.startsWith("pubsub_")) return value;
      const { parsePubsubSetting } = await import("../../daemon/services/pubsub/limits.ts");
      try {
        parsePubsubSetting(key.slice("pubsub_".length), value);
      } catch (e) {
        throw new CliError("invalid_argument", (e as Error).message, `for example: pilot config --set ${key}=${key.endsWith("rate") || key.endsWith("rate_total") || key.endsWith("subscriptions") ? "1000" : "4MiB"}`);
      }
      return value.trim();
    }
  }
}

/** The config as printed: the webhook secret is never shown. */
function shown(config: Config): Config {
  return config.webhook_secret === undefined ? config : { ...config, webhook_secret: "(hidden)" };
}

/** With a webhook and no webhook_secret: the generated secret's file (created now if missing). */
async function webhookSecretNote(config: Config): Promise<{ file: string; text: string } | null> {
  if (config.webhook === undefined || config.webhook_secret !== undefined) return null;
  const { webhookSecret } = await import("../../daemon/webhooks.ts");
  const { pilotPaths } = await import("../../util/paths.ts");
  const s = webhookSecret(pilotPaths().home);
  return { file: s.file!, text: `webhook requests are signed with the secret in ${s.file} (read it with: cat ${s.file}); receivers check X-Pilot-Signature with it` };
}

function keyOf(text: string): ConfigKey {
  if (!(text in CONFIG_KEYS)) throw new CliError("invalid_argument", `unknown config key "${text}"`, `keys: ${KEY_LIST}`);
  return text as ConfigKey;
}

function list(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

export const configCommand: CommandSpec = {
  name: "config",
  description: "Show or change the defaults pilot daemon start uses ($PILOT_HOME/config.json); flags still win",
  options: [
    { flags: "--set <key=value>", description: `set a key (repeatable); keys: ${KEY_LIST}` },
    { flags: "--unset <key>", description: "remove a key, back to the built-in default (repeatable)" },
  ],
  examples: ["pilot config", "pilot config --set registry=203.0.113.5:9000 --set hostname=agent-a", "pilot config --unset tags", "pilot config --set webhook=https://hooks.example.com/pilot"],
  returns: {
    config_path: "the config file",
    config: "the keys that are set, as strings (after the change)",
    keys: "every valid key and what it means",
    set: "the keys this call set (with --set)",
    unset: "the keys this call removed (with --unset)",
    webhook_secret_file: "where the generated webhook signing secret is (when a webhook is set without webhook_secret)",
  },
  errors: ["invalid_argument"],
  async run({ out }, _args, o) {
    const sets = list(o.set);
    const unsets = list(o.unset);
    const config: Config = readConfig();
    const changed: Record<string, string> = {};
    for (const item of sets) {
      const eq = item.indexOf("=");
      if (eq <= 0) throw new CliError("invalid_argument", `--set "${item}" is not key=value`, "for example: pilot config --set registry=203.0.113.5:9000");
      const key = keyOf(item.slice(0, eq));
      changed[key] = config[key] = await checkValue(key, item.slice(eq + 1));
    }
    const removed = unsets.map((k) => keyOf(k));
    for (const key of removed) delete config[key];
    if (sets.length > 0 || removed.length > 0) {
      writeConfig(config);
      const secret = "webhook" in changed || "webhook_secret" in changed || removed.includes("webhook_secret") ? await webhookSecretNote(config) : null;
      const data = {
        config_path: configPath(),
        ...(sets.length ? { set: shown(changed) } : {}),
        ...(removed.length ? { unset: removed } : {}),
        config: shown(config),
        keys: CONFIG_KEYS,
        ...(secret ? { webhook_secret_file: secret.file } : {}),
      };
      out.result(data, () =>
        [
          ...Object.entries(shown(changed)).map(([k, v]) => `${k} = ${v}`),
          ...removed.map((k) => `${k} unset (built-in default)`),
          ...(secret ? [secret.text] : []),
          [...Object.keys(changed), ...removed].every((k) => k === "mcp_allow_trust_approval")
            ? `saved in ${configPath()}; pilot mcp reads it at each call (no restart)`
            : `saved in ${configPath()}; it takes effect at the next: pilot daemon start`,
        ].join("\n"),
      );
      return;
    }
    const visible = shown(config);
    out.result({ config_path: configPath(), config: visible, keys: CONFIG_KEYS }, (d) =>
      [
        `config: ${d.config_path}`,
        table(["KEY", "VALUE", "MEANING"], Object.entries(CONFIG_KEYS).map(([k, meaning]) => [k, visible[k as ConfigKey] ?? "(default)", meaning]), "  "),
        "change with: pilot config --set key=value   (takes effect at the next daemon start)",
      ].join("\n"),
    );
  },
};
