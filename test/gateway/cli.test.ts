/**
 * `pilot gateway` without a running gateway or daemon: not_running with a
 * hint everywhere, usage and malformed values, help, and the refusal of a
 * 10.x subnet without root (run as `nobody` when the tests run as root).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { runPilot } from "../support/cluster.ts";
import { IS_ROOT, privateSubnet } from "./support.ts";

const home = mkdtempSync("/tmp/pilot-gw-cli-");
const env = { PILOT_HOME: home };
afterAll(() => rmSync(home, { recursive: true, force: true }));
const pilot = (args: string[]) => runPilot(["gateway", ...args, "--json"], { env });

describe("gateway commands without a gateway", () => {
  test("list, map, unmap and stop say not_running, with how to start one", async () => {
    for (const args of [["list"], ["map", "agent-a"], ["unmap", "10.4.0.1"], ["stop"]]) {
      const r = await pilot(args);
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 1, stdout: "" });
      expect(r.json).toEqual({
        status: "error",
        code: "not_running",
        message: "no gateway is running",
        hint: "start one with: sudo pilot gateway start --ports 80 <agent>   (or without sudo: --subnet 127.77.0.0/16)",
      });
    }
  });

  test("start without a daemon says the daemon is not running", async () => {
    const r = await pilot(["start", "--subnet", privateSubnet(76).cidr, "agent-a"]);
    expect(r.code).toBe(1);
    expect(r.json).toEqual({ status: "error", code: "not_running", message: "the Pilot daemon is not running", hint: "start it with: pilot daemon start" });
  });

  test("malformed values and usage mistakes exit 2", async () => {
    const invalid: [string[], RegExp][] = [
      [["start", "--subnet", "10.4.0.1/16", "a"], /host bits set/],
      [["start", "--subnet", "banana", "a"], /not a subnet/],
      [["start", "--subnet", "10.4.0.0/40", "a"], /prefix length/],
      [["start", "--ports", "80,99999", "a"], /not a port/],
      [["start", "--ports", "", "a"], /--ports needs at least one port/],
      [["start", "not a target!"], /not a Pilot address/],
      [["map", "a", "--ports", "http"], /not a port/],
      [["start", "--log-level", "loud", "a"], /--log-level/],
    ];
    for (const [args, message] of invalid) {
      const r = await pilot(args);
      expect({ args, code: r.code, error: r.json?.code }).toEqual({ args, code: 2, error: "invalid_argument" });
      expect(r.json.message).toMatch(message);
    }
    for (const args of [["map"], ["unmap"], ["bogus"], ["list", "extra"]]) {
      const r = await pilot(args);
      expect({ args, code: r.code, error: r.json?.code }).toEqual({ args, code: 2, error: "usage" });
    }
  });

  test("help says where the local IPs come from and when root is needed", async () => {
    const r = await runPilot(["gateway", "start", "--help"], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("default 10.4.0.0/16");
    expect(r.stdout).toContain("a subnet inside 127.0.0.0/8, e.g. 127.77.0.0/16, needs no alias and no root");
    expect(r.stdout).toContain("default 80");
    const group = await runPilot(["gateway", "--help"], { env });
    for (const c of ["start", "map", "unmap", "list", "stop"]) expect(group.stdout).toContain(`  ${c} `);
  });

  test("without root, a subnet that needs loopback aliases is refused with what to do instead", async () => {
    let r;
    if (IS_ROOT) {
      // As nobody, in a home nobody may use.
      const nobodyHome = mkdtempSync("/tmp/pilot-gw-nobody-");
      chmodSync(nobodyHome, 0o777);
      try {
        const [cmd, ...base] = process.env.PILOT_BIN ? [process.env.PILOT_BIN] : [process.execPath, "src/cli/main.ts"];
        const proc = Bun.spawn(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", cmd!, ...base, "gateway", "start", "--ports", "80", "agent-a", "--json"], {
          env: { ...process.env, PILOT_HOME: nobodyHome, HOME: nobodyHome },
          stdout: "pipe",
          stderr: "pipe",
        });
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
        r = { code, stdout, json: JSON.parse(stderr.trim().split("\n").pop()!) };
      } finally {
        rmSync(nobodyHome, { recursive: true, force: true });
      }
    } else {
      r = await pilot(["start", "--ports", "80", "agent-a"]);
    }
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("unauthorized");
    expect(r.json.message).toBe("adding the loopback address 10.4.0.1 needs root");
    expect(r.json.hint).toContain("sudo pilot gateway start");
    expect(r.json.hint).toContain("--subnet 127.77.0.0/16");
  });
});
