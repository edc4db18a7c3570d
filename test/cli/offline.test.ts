/**
 * The CLI without a daemon: not_running everywhere it needs one, usage errors
 * (exit 2) and malformed values (exit 1) before anything is sent, help for
 * every command, the `context` catalogue, and `config`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runPilot } from "../support/cluster.ts";

const home = mkdtempSync("/tmp/pilot-cli-offline-");
const env = { PILOT_HOME: home };
afterAll(() => rmSync(home, { recursive: true, force: true }));

const pilot = (args: string[], json = true) => runPilot(json ? [...args, "--json"] : args, { env });

/** Every command that talks to the daemon, with arguments that are otherwise valid. */
const DAEMON_COMMANDS: string[][] = [
  ["info"],
  ["set-hostname", "agent-x"],
  ["clear-hostname"],
  ["find", "agent-x"],
  ["set-public"],
  ["set-private"],
  ["set-tags", "nlp"],
  ["clear-tags"],
  ["peers"],
  ["peers", "--search", "nlp"],
  ["reputation", "agent-x"],
  ["connections"],
  ["disconnect", "1"],
  ["ping", "5"],
  ["traceroute", "5"],
  ["bench", "5"],
  ["connect", "5", "--message", "hi"],
  ["recv", "1000", "--count", "1"],
  ["send", "5", "1000", "--data", "hi"],
  ["listen", "1000", "--count", "1"],
  ["handshake", "5", "hello"],
  ["pending"],
  ["approve", "5"],
  ["reject", "5"],
  ["trust"],
  ["untrust", "5"],
  ["events"],
  ["events", "--follow", "--count", "1"],
  ["send-message", "5", "--data", "hi"],
  ["inbox"],
  ["inbox", "read", "0190f4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d"],
  ["inbox", "clear"],
  ["outbox"],
  ["send-file", "5", "./some-file"],
  ["received"],
  ["publish", "5", "sensors.temp", "--data", "21.5"],
  ["subscribe", "5", "sensors.>", "--count", "1"],
  ["topics"],
  ["task", "submit", "5", "--task", "x"],
  ["task", "list"],
  ["task", "show", "0123456789"],
  ["task", "queue"],
  ["task", "start"],
  ["set-tasks", "on"],
  ["status"],
  ["dashboard"],
];

const ALL_COMMANDS = [
  ...new Set(DAEMON_COMMANDS.filter((c) => c[0] !== "task").map((c) => c[0]!)),
  ...["submit", "list", "show", "accept", "decline", "start", "result", "cancel", "approve", "reject", "queue"].map((c) => `task ${c}`),
  "config",
  "context",
  "version",
  "rendezvous",
  "daemon start",
  "daemon stop",
  "daemon status",
  "daemon install",
  "daemon uninstall",
  "logs",
  "gateway start",
  "gateway map",
  "gateway unmap",
  "gateway list",
  "gateway stop",
  "expose",
  "a2a discover",
  "install",
  "uninstall",
  "mcp",
];

describe("without a daemon", () => {
  test("every daemon command fails with not_running and the hint to start it", async () => {
    const results = await Promise.all(DAEMON_COMMANDS.map((args) => pilot(args)));
    results.forEach((r, i) => {
      expect({ args: DAEMON_COMMANDS[i], code: r.code }).toEqual({ args: DAEMON_COMMANDS[i], code: 1 });
      expect(r.stdout).toBe("");
      expect(r.json).toEqual({ status: "error", code: "not_running", message: "the Pilot daemon is not running", hint: "start it with: pilot daemon start" });
    });
  }, 30_000); // dozens of CLI processes at once: on a loaded 2-core machine this takes more than the default 5 s

  test("text mode says what went wrong and what to do", async () => {
    const r = await pilot(["info"], false);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("error: the Pilot daemon is not running\nhint:  start it with: pilot daemon start\n");
  });
});

describe("usage errors and malformed values exit 2", () => {
  const usage: string[][] = [
    ["ping"], // missing target
    ["set-hostname"],
    ["set-tags"],
    ["send", "5", "1000"], // --data missing
    ["send", "5"],
    ["disconnect"],
    ["ping", "5", "--bogus"], // unknown option
    ["find", "a", "b"], // extra argument
    ["bogus-command"],
    ["peers", "--search"],
    ["reputation"],
  ];
  for (const args of usage) {
    test(`usage: pilot ${args.join(" ")}`, async () => {
      const r = await pilot(args);
      expect(r.code).toBe(2);
      expect(r.json.status).toBe("error");
      expect(r.json.code).toBe("usage");
      expect(r.json.hint).toBeString();
    });
  }

  const invalid: [string[], RegExp][] = [
    [["ping", "not a target!"], /not a Pilot address/],
    [["ping", "1:0000.0000.0005"], /first hex group must repeat the network/],
    [["ping", "5", "--count", "0"], /--count/],
    [["ping", "5", "--count", "x"], /--count/],
    [["ping", "5", "--interval", "soon"], /--interval/],
    [["ping", "5", "--size", "5000"], /--size/],
    [["connect", "5", "70000", "--message", "x"], /not a port/],
    [["recv", "port"], /not a port/],
    [["listen", "0"], /not a port/],
    [["bench", "5", "-3"], /./],
    [["bench", "5", "lots"], /size_mb/],
    [["disconnect", "abc"], /not a connection id/],
    [["events", "--type", "Trust Request"], /--type/],
    [["events", "--since", "-1"], /./],
    [["events", "--since", "x"], /--since/],
    [["events", "--count", "1"], /with --follow/],
    [["events", "--follow", "--limit", "5"], /without --follow/],
  ];
  for (const [args, message] of invalid) {
    test(`invalid_argument: pilot ${args.join(" ")}`, async () => {
      const r = await pilot(args);
      expect(r.code).toBe(2);
      expect(r.json.status).toBe("error");
      if (r.json.code === "invalid_argument") expect(r.json.message).toMatch(message);
      else expect(r.json.code).toBe("usage"); // "-3" reads as an unknown flag
    });
  }
});

describe("help", () => {
  test("every command has help with its description, usage, and an example", async () => {
    const results = await Promise.all(ALL_COMMANDS.map((c) => runPilot([...c.split(" "), "--help"], { env })));
    results.forEach((r, i) => {
      const name = ALL_COMMANDS[i]!;
      expect({ name, code: r.code }).toEqual({ name, code: 0 });
      expect(r.stdout.startsWith(`pilot ${name}: `)).toBe(true);
      expect(r.stdout).toContain("Usage:");
      if (!name.startsWith("daemon") && name !== "context" && name !== "version") expect({ name, examples: r.stdout.includes("Examples:\n  pilot ") }).toEqual({ name, examples: true });
      // A --no-X flag switches X off; "(default: true)" beside it would read as if X were off by default.
      const negated = r.stdout.split("\n").filter((l) => /^\s+--no-/.test(l));
      expect({ name, negated: negated.filter((l) => l.includes("(default:")) }).toEqual({ name, negated: [] });
    });
  }, 30_000); // dozens of CLI processes at once: on a loaded 2-core machine this takes more than the default 5 s

  test("the top-level help lists every command", async () => {
    const r = await runPilot(["--help"], { env });
    expect(r.code).toBe(0);
    for (const c of ALL_COMMANDS.filter((c) => !c.includes(" "))) expect(r.stdout).toContain(`  ${c}`); // grouped commands are under their group
  });
});

describe("context", () => {
  test("lists every command with its arguments, options, results and errors", async () => {
    const r = await pilot(["context"]);
    expect(r.code).toBe(0);
    const data = r.json.data;
    expect(Object.keys(data.commands).sort()).toEqual([...ALL_COMMANDS].sort());
    for (const [name, entry] of Object.entries<any>(data.commands)) {
      expect({ name, description: typeof entry.description }).toEqual({ name, description: "string" });
      expect(Object.keys(entry.returns).length).toBeGreaterThan(0);
      for (const code of entry.errors) expect({ name, code, known: code in data.error_codes }).toEqual({ name, code, known: true });
    }
    expect(data.commands.ping.args).toBe("<target>");
    expect(data.commands.ping.options.map((o: any) => o.flags)).toEqual(["--count <n>", "--interval <duration>", "--timeout <duration>", "--size <bytes>"]);
    expect(data.commands.ping.options[0].default).toBe(4);
    expect(data.commands.info.returns).toHaveProperty("address");
    expect(data.commands.info.returns).toHaveProperty("node_id");
    expect(data.commands.info.returns).toHaveProperty("hostname");
    expect(data.commands.info.errors).toContain("not_running");
  });
});

describe("config", () => {
  test("shows the keys, sets and unsets validated values, and keeps the file valid", async () => {
    let r = await pilot(["config"]);
    expect(r.code).toBe(0);
    expect(r.json.data.config_path).toBe(join(home, "config.json"));
    expect(r.json.data.config).toEqual({});
    expect(Object.keys(r.json.data.keys)).toEqual(["registry", "beacon", "relay_ws", "listen", "hostname", "public", "tags", "log_level", "log_max_size", "log_keep", "buffer_budget", "zero_window_timeout", "disabled_services", "open_services", "metrics", "webhook", "webhook_secret", "dashboard", "message_max_size", "messages_quota", "messages_quota_total", "files_quota", "files_quota_total", "messages_memory_total", "files_memory_total", "pubsub_max_event", "pubsub_queue", "pubsub_queue_total", "pubsub_rate", "pubsub_rate_total", "pubsub_subscriptions", "tasks_max_per_peer", "tasks_max_total", "tasks_min_score", "mcp_allow_trust_approval"]);

    r = await pilot(["config", "--set", "registry=127.0.0.1:9100", "--set", "tags=nlp, #summarizer", "--set", "public=true", "--set", "beacon=off"]);
    expect(r.code).toBe(0);
    expect(r.json.data.set).toEqual({ registry: "127.0.0.1:9100", tags: "nlp,summarizer", public: "true", beacon: "off" });
    expect(r.json.data.config).toEqual({ registry: "127.0.0.1:9100", tags: "nlp,summarizer", public: "true", beacon: "off" });
    expect(JSON.parse(readFileSync(join(home, "config.json"), "utf8"))).toEqual(r.json.data.config);

    r = await pilot(["config", "--unset", "tags", "--unset", "beacon"]);
    expect(r.code).toBe(0);
    expect(r.json.data.unset).toEqual(["tags", "beacon"]);
    expect(r.json.data.config).toEqual({ registry: "127.0.0.1:9100", public: "true" });

    r = await pilot(["config", "--set", "listen=0.0.0.0:0", "--set", "log_level=debug", "--set", "hostname=agent-x"]);
    expect(r.code).toBe(0);
    r = await pilot(["config", "--set", "tasks_min_score=20"]);
    expect(r.json.data.set).toEqual({ tasks_min_score: "20" });

    r = await pilot(["config"], false);
    expect(r.stdout).toMatch(/registry\s+127\.0\.0\.1:9100/);
    expect(r.stdout).toMatch(/beacon\s+\(default\)/);
  });

  const bad: [string, RegExp][] = [
    ["registry=nowhere", /HOST:PORT/],
    ["registry=127.0.0.1:0", /HOST:PORT/],
    ["listen=1.2.3.4:99999", /HOST:PORT/],
    ["public=yes", /true or false/],
    ["mcp_allow_trust_approval=yes", /mcp_allow_trust_approval must be true or false/],
    ["log_level=loud", /debug, info, warn or error/],
    ["hostname=Not_Valid", /hostname/],
    ["hostname=12345", /all digits/],
    ["tags=UPPER", /tag/],
    ["tasks_min_score=101", /not a polo score/],
    ["tasks_min_score=-1", /not a polo score/],
    ["tasks_min_score=12.5", /whole number/],
    ["colour=blue", /unknown config key "colour"/],
    ["registry", /not key=value/],
    ["webhook=ftp://example.com/hook", /http:\/\/ or https:\/\//],
    ["webhook=not a url", /not a URL/],
    ["webhook_secret=short", /16 to 256/],
  ];
  for (const [item, message] of bad) {
    test(`config --set ${item} is refused and changes nothing`, async () => {
      const before = existsSync(join(home, "config.json")) ? readFileSync(join(home, "config.json"), "utf8") : null;
      const r = await pilot(["config", "--set", item]);
      expect(r.code).toBe(2);
      expect(r.json.code).toBe("invalid_argument");
      expect(r.json.message).toMatch(message);
      const after = existsSync(join(home, "config.json")) ? readFileSync(join(home, "config.json"), "utf8") : null;
      expect(after).toBe(before);
    });
  }

  test("unknown key in --unset, and a corrupt file, are reported", async () => {
    let r = await pilot(["config", "--unset", "colour"]);
    expect(r.code).toBe(2);
    expect(r.json.hint).toContain("registry");
    const other = mkdtempSync("/tmp/pilot-cli-config-");
    try {
      writeFileSync(join(other, "config.json"), "{not json");
      r = await runPilot(["config", "--json"], { env: { PILOT_HOME: other } });
      expect(r.code).toBe(1); // the file is damaged, not the command line
      expect(r.json.code).toBe("invalid_argument");
      expect(r.json.hint).toContain("fix it");
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
