/**
 * `pilot task …` values checked before anything reaches a daemon: usage
 * mistakes and bad values exit 2 with a hint; the config keys the task
 * service reads are validated too.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runPilot } from "../../support/cluster.ts";

const home = mkdtempSync("/tmp/pilot-task-cli-");
const env = { PILOT_HOME: home };
afterAll(() => rmSync(home, { recursive: true, force: true }));
const pilot = (args: string[]) => runPilot([...args, "--json"], { env });

const big = join(home, "big.bin");
writeFileSync(big, Buffer.alloc(4 * 1024 * 1024 + 1));

describe("task commands refuse bad command lines with exit 2", () => {
  const cases: [string[], "usage" | "invalid_argument", RegExp][] = [
    [["task", "submit"], "usage", /missing required args/],
    [["task", "submit", "5"], "usage", /--task is required/],
    [["task", "submit", "5", "--task", ""], "invalid_argument", /must not be empty/],
    [["task", "submit", "5", "--task", "x".repeat(8193)], "invalid_argument", /8192/],
    [["task", "submit", "bad target!", "--task", "x"], "invalid_argument", /not a Pilot address|hostname/],
    [["task", "submit", "5", "--task", "x", "--deadline", "soon"], "invalid_argument", /--deadline must be a duration/],
    [["task", "submit", "5", "--task", "x", "--deadline", "500ms"], "invalid_argument", /at least 1s/],
    [["task", "submit", "5", "--task", "x", "--deadline", "31d"], "invalid_argument", /at most/],
    [["task", "submit", "5", "--task", "x", "--accept-within", "2h", "--deadline", "1h"], "invalid_argument", /longer than --deadline/],
    [["task", "submit", "5", "--task", "x", "--input", "/nonexistent/file"], "invalid_argument", /no such file/],
    [["task", "submit", "5", "--task", "x", "--input", big], "invalid_argument", /send-file|at most/],
    [["task", "show"], "usage", /missing required args/],
    [["task", "show", "../../etc/passwd"], "invalid_argument", /not a task id/],
    [["task", "show", "abc"], "invalid_argument", /not a task id/],
    [["task", "show", "0123456789", "--save-result"], "usage", /value is missing/],
    [["task", "accept", "zz"], "invalid_argument", /not a task id/],
    [["task", "start", "not-hex"], "invalid_argument", /not a task id/],
    [["task", "result", "0123456789"], "usage", /--text or --file/],
    [["task", "result", "0123456789", "--text", "a", "--file", big], "usage", /--text or --file/],
    [["task", "result", "0123456789", "--file", big], "invalid_argument", /at most/],
    [["task", "list", "--status", "bogus"], "invalid_argument", /--status must be/],
    [["task", "list", "--received", "--submitted"], "usage", /exclude each other/],
    [["task", "list", "--limit", "0"], "invalid_argument", /--limit/],
    [["task", "bogus"], "usage", /unknown command/],
    [["set-tasks", "maybe"], "invalid_argument", /on or off/],
    [["set-tasks"], "usage", /missing required args/],
  ];
  for (const [args, code, message] of cases) {
    test(`pilot ${args.map((a) => (a.length > 30 ? a.slice(0, 12) + "…" : a)).join(" ")}`, async () => {
      const r = await pilot(args);
      expect({ code: r.code, json: r.json?.code }).toEqual({ code: 2, json: code });
      expect(r.json.message).toMatch(message);
    });
  }

  test("without a daemon, task commands say so (exit 1)", async () => {
    for (const args of [["task", "list"], ["task", "queue"], ["peers", "--tasks"], ["task", "approve", "0123456789"]]) {
      const r = await pilot(args);
      expect({ args, code: r.code, json: r.json?.code }).toEqual({ args, code: 1, json: "not_running" });
    }
  });
});

describe("config keys of the task service", () => {
  test("are validated and stored", async () => {
    let r = await pilot(["config", "--set", "tasks_max_per_peer=8", "--set", "tasks_max_total=100", "--set", "tasks_min_score=5"]);
    expect(r.code).toBe(0);
    expect(r.json.data.config).toMatchObject({ tasks_max_per_peer: "8", tasks_max_total: "100", tasks_min_score: "5" });
    for (const bad of ["tasks_max_per_peer=0", "tasks_max_total=lots", "tasks_min_score=-1", "tasks_max_per_peer=99999"]) {
      r = await pilot(["config", "--set", bad]);
      expect({ bad, code: r.code, json: r.json.code }).toEqual({ bad, code: 2, json: "invalid_argument" });
    }
  });
});
