/**
 * Every numeric and enumerated option of every command, given a bad value:
 * a usage mistake (exit 2, code invalid_argument) naming the option and what
 * it takes, before anything is started or contacted. Numbers are read as
 * typed ("1e2", "0x10" and "" are not numbers here). Good values get past
 * the check (to not_running: no daemon runs in these tests).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { runPilot } from "../support/cluster.ts";

const home = mkdtempSync("/tmp/pilot-cli-values-");
const env = { PILOT_HOME: home, PILOT_REGISTRY: "", PILOT_BEACON: "" };
afterAll(() => rmSync(home, { recursive: true, force: true }));

const pilot = (args: string[], json = true) => runPilot(json ? [...args, "--json"] : args, { env });

/** [command line, what the message must say]. */
const BAD: [string[], RegExp][] = [
  // the three
  [["ping", "5", "--count", "abc"], /--count must be a whole number from 1 to \d+, got "abc"/],
  [["gateway", "start", "--ports", "99999", "agent-a"], /--ports entry "99999" is not a port \(1-65535\)/],
  [["gateway", "start", "--subnet", "10.4.0.0/33", "agent-a"], /prefix length of "10\.4\.0\.0\/33" must be 8 to 30/],
  // ping
  [["ping", "5", "--count", "1e2"], /--count .* got "1e2"/],
  [["ping", "5", "--count", "0x10"], /--count .* got "0x10"/],
  [["ping", "5", "--count", "2.5"], /--count .* got "2\.5"/],
  [["ping", "5", "--count", "99999999"], /--count/],
  [["ping", "5", "--interval", "soon"], /--interval must be a duration/],
  [["ping", "5", "--timeout", "0"], /--timeout must be a duration/],
  [["ping", "5", "--timeout", "1e3"], /--timeout .* got "1e3"/],
  [["ping", "5", "--size", "5000"], /--size must be a whole number from 0 to 1024/],
  [["ping", "5", "--size", "big"], /--size/],
  // traceroute, bench
  [["traceroute", "5", "--samples", "0"], /--samples must be a whole number from 1 to 1000/],
  [["traceroute", "5", "--timeout", "later"], /--timeout/],
  [["bench", "5", "lots"], /size_mb "lots"/],
  [["bench", "5", "1", "--timeout", "x"], /--timeout/],
  // streams and datagrams
  [["connect", "5", "70000", "--message", "x"], /port "70000" is not a port/],
  [["connect", "5", "1000", "--timeout", "forever", "--message", "x"], /--timeout/],
  [["recv", "0x10"], /port "0x10" is not a port/],
  [["recv", "1000", "--count", "none"], /--count/],
  [["recv", "1000", "--timeout", "2d"], /--timeout/],
  [["listen", "1000", "--count", "0"], /--count/],
  [["listen", "1000", "--timeout", "1x"], /--timeout/],
  [["send", "5", "65536", "--data", "x"], /not a port/],
  [["disconnect", "1e3"], /not a connection id/],
  // a2a
  [["a2a", "discover", "--tag", "nlp", "--port", "0x50"], /--port "0x50" is not a port/],
  [["a2a", "discover", "--tag", "nlp", "--timeout", "soon"], /--timeout/],
  [["a2a", "discover", "--tag", "not a tag"], /is not a tag/],
  // daemon start
  [["daemon", "start", "--registry", "nowhere"], /--registry "nowhere" is not HOST:PORT/],
  [["daemon", "start", "--registry", "127.0.0.1:99999"], /--registry/],
  [["daemon", "start", "--beacon", "127.0.0.1"], /--beacon "127\.0\.0\.1" is not HOST:PORT/],
  [["daemon", "start", "--listen", "nope"], /--listen "nope" is not HOST:PORT/],
  [["daemon", "start", "--relay-ws", "http://127.0.0.1:443"], /--relay-ws: .*is not a ws:\/\/ or wss:\/\/ URL/],
  [["daemon", "start", "--relay-ws", "wss://user:pw@127.0.0.1"], /--relay-ws: .*carries no credentials/],
  [["daemon", "start", "--hostname", "Not_A_Name"], /hostname "Not_A_Name" must be lowercase/],
  [["daemon", "start", "--tags", "nlp,BAD TAG"], /tag "BAD TAG"/],
  [["daemon", "start", "--log-level", "loud"], /--log-level must be debug, info, warn or error, got "loud"/],
  [["daemon", "start", "--log-format", "xml"], /--log-format must be text or json, got "xml"/],
  // rendezvous
  [["rendezvous", "--registry-addr", "nope"], /--registry-addr "nope" is not HOST:PORT/],
  [["rendezvous", "--beacon-addr", "1.2.3.4:70000"], /--beacon-addr/],
  [["rendezvous", "--registration-rate", "abc"], /--registration-rate must be a number above 0/],
  [["rendezvous", "--registration-rate", "0"], /--registration-rate/],
  [["rendezvous", "--request-rate", "0x10"], /--request-rate .* got "0x10"/],
  [["rendezvous", "--max-connections-per-ip", "1.5"], /--max-connections-per-ip must be a whole number/],
  [["rendezvous", "--log-format", "xml"], /--log-format must be text or json/],
  [["rendezvous", "--log-level", "loud"], /--log-level must be/],
  [["rendezvous", "--ws-addr", "nope"], /--ws-addr "nope" is not HOST:PORT/],
  [["rendezvous", "--relay-rate", "1KiB"], /--relay-rate must be a size from 64KiB/],
  [["rendezvous", "--ws-addr", "127.0.0.1:0", "--tls-cert", "c.pem"], /--tls-cert and --tls-key go together/],
  [["rendezvous", "--tls-cert", "c.pem", "--tls-key", "k.pem"], /needs --ws-addr/],
  // gateway
  [["gateway", "start", "--ports", "80,http", "agent-a"], /--ports entry "http"/],
  [["gateway", "start", "--ports", "", "agent-a"], /--ports needs at least one port/],
  [["gateway", "start", "--subnet", "banana", "agent-a"], /not a subnet/],
  [["gateway", "start", "--subnet", "10.4.0.1/16", "agent-a"], /host bits set/],
  [["gateway", "start", "--log-level", "loud", "agent-a"], /--log-level/],
  [["gateway", "map", "agent-a", "--ports", "0"], /not a port/],
  [["gateway", "map", "agent-a", "--ip", "10.4.0"], /--ip "10\.4\.0" is not an IPv4 address/],
  // expose, config
  [["expose", "70000", "--to", "8000"], /not a port/],
  [["expose", "80", "--to", "nope"], /--to "nope" is not HOST:PORT/],
  [["config", "--set", "log_level=loud"], /log_level must be/],
];

describe("a bad option value is a usage mistake: exit 2, invalid_argument, before anything runs", () => {
  for (const [args, message] of BAD) {
    test(`pilot ${args.join(" ")}`, async () => {
      const r = await pilot(args);
      expect({ args, code: r.code, error: r.json?.code }).toEqual({ args, code: 2, error: "invalid_argument" });
      expect(r.stdout).toBe("");
      expect(r.json.message).toMatch(message);
    });
  }

  test("text mode: the message and a hint with a good value, exit 2", async () => {
    const r = await pilot(["ping", "5", "--count", "abc"], false);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: --count must be a whole number from 1 to 1000000, got "abc"\nhint:  for example: --count 3\n');
  });
});

describe("good values pass the checks", () => {
  const GOOD: string[][] = [
    ["ping", "5", "--count", "3", "--interval", "200ms", "--timeout", "1.5s", "--size", "64"],
    ["traceroute", "5", "--samples", "2", "--timeout", "5s"],
    ["recv", "1000", "--count", "1", "--timeout", "2m"],
    ["listen", "1000", "--count", "2", "--timeout", "0.5"],
    ["a2a", "discover", "--tag", "nlp", "--port", "8080", "--timeout", "3s"],
    ["gateway", "map", "agent-a", "--ports", "80,443", "--ip", "10.4.0.7"],
    ["expose", "80", "--to", "127.0.0.1:8000"],
  ];
  for (const args of GOOD) {
    test(`pilot ${args.join(" ")}: gets to the daemon (not_running here)`, async () => {
      const r = await pilot(args);
      expect({ args, code: r.code, error: r.json?.code }).toEqual({ args, code: 1, error: "not_running" });
    });
  }
});
