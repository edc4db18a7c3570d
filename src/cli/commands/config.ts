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
      return hostPort(value, key, false);
    case "beacon":
      return value === "off" ? value : hostPort(value, key, false);
    case "listen":
      return hostPort(value, key, true);
    case "public":
      if (value !== "true" && value !== "false") throw new CliError("invalid_argument", `public must be true or false, got "${value}"`, "for example: pilot config --set public=true");
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
    case "zero_window_timeout": {
      const { durationOption } = await import("../args.ts");
      durationOption(value, "zero_window_timeout");
      return value;
    }
  }
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
  examples: ["pilot config", "pilot config --set registry=203.0.113.5:9000 --set hostname=agent-a", "pilot config --unset tags"],
  returns: {
    config_path: "the config file",
    config: "the keys that are set, as strings (after the change)",
    keys: "every valid key and what it means",
    set: "the keys this call set (with --set)",
    unset: "the keys this call removed (with --unset)",
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
      const data = { config_path: configPath(), ...(sets.length ? { set: changed } : {}), ...(removed.length ? { unset: removed } : {}), config, keys: CONFIG_KEYS };
      out.result(data, () =>
        [
          ...Object.entries(changed).map(([k, v]) => `${k} = ${v}`),
          ...removed.map((k) => `${k} unset (built-in default)`),
          `saved in ${configPath()}; it takes effect at the next: pilot daemon start`,
        ].join("\n"),
      );
      return;
    }
    out.result({ config_path: configPath(), config, keys: CONFIG_KEYS }, (d) =>
      [
        `config: ${d.config_path}`,
        table(["KEY", "VALUE", "MEANING"], Object.entries(CONFIG_KEYS).map(([k, meaning]) => [k, config[k as ConfigKey] ?? "(default)", meaning]), "  "),
        "change with: pilot config --set key=value   (takes effect at the next daemon start)",
      ].join("\n"),
    );
  },
};
