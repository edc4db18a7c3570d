/**
 * The pieces of examples/a2a-agent that need no daemon: the launch-era
 * tasks/send and tasks/get (bounded, per-caller task store), the agent.json
 * card with capabilities.skills, and the agent's settings from options,
 * environment and skills files. test/a2a/agent.test.ts runs them for real
 * over Pilot; test/seeds/ runs the tutorial's own Python against them.
 */
import { describe, expect, test } from "bun:test";
import { addCapabilitySkills, launchEraCall, LaunchEraTaskStore, MAX_TASKS, MAX_TASKS_PER_CALLER, type LaunchEraTask } from "../../examples/a2a-agent/launch-era.ts";
import { agentSettings, DEFAULT_PROFILE, parseSkillsFile, UsageError } from "../../examples/a2a-agent/profile.ts";
import { SENTIMENT_REPORT, SKILLS } from "../../examples/a2a-agent/skills.ts";

const task = (id: string): LaunchEraTask => ({ id, status: { state: "completed", message: "ok" }, artifacts: [] });

describe("LaunchEraTaskStore", () => {
  test("defaults: 1000 tasks in all, 100 per caller", () => {
    expect(new LaunchEraTaskStore().limits).toEqual({ total: MAX_TASKS, perCaller: MAX_TASKS_PER_CALLER });
    expect([MAX_TASKS, MAX_TASKS_PER_CALLER]).toEqual([1000, 100]);
  });

  test("a caller sees only its own tasks", () => {
    const s = new LaunchEraTaskStore();
    s.put("0:0000.0000.0002", task("t1"));
    expect(s.get("0:0000.0000.0002", "t1")?.id).toBe("t1");
    expect(s.get("0:0000.0000.0003", "t1")).toBeUndefined();
    // The same id from another caller is another task.
    s.put("0:0000.0000.0003", { ...task("t1"), status: { state: "failed", message: "theirs" } });
    expect(s.get("0:0000.0000.0002", "t1")?.status.message).toBe("ok");
    expect(s.size).toBe(2);
  });

  test("over its per-caller cap, a caller loses its own oldest task, not anyone else's", () => {
    const s = new LaunchEraTaskStore({ total: 10, perCaller: 3 });
    s.put("quiet", task("q"));
    for (let i = 0; i < 5; i++) s.put("busy", task(`b${i}`));
    expect(["b0", "b1", "b2", "b3", "b4"].map((id) => s.get("busy", id) !== undefined)).toEqual([false, false, true, true, true]);
    expect(s.get("quiet", "q")).toBeDefined();
    expect(s.size).toBe(4);
  });

  test("over its total cap, the oldest task of all goes; re-sending an id makes it the newest", () => {
    const s = new LaunchEraTaskStore({ total: 4, perCaller: 4 });
    for (const owner of ["a", "b", "c", "d"]) s.put(owner, task("t"));
    s.put("a", task("t")); // a's task is now the newest
    s.put("e", task("t"));
    expect(["a", "b", "c", "d", "e"].map((o) => s.get(o, "t") !== undefined)).toEqual([true, false, true, true, true]);
    expect(s.size).toBe(4);
    for (let i = 0; i < 10_000; i++) s.put(`peer-${i % 50}`, task(String(i)));
    expect(s.size).toBe(4);
  });
});

describe("launchEraCall", () => {
  const ctx = () => ({ skills: SKILLS, store: new LaunchEraTaskStore(), log: () => {}, newId: () => "task-001" });
  const send = (text: string, extra: Record<string, unknown> = {}) => ({ jsonrpc: "2.0", id: 1, method: "tasks/send", params: { message: { role: "user", parts: [{ type: "text", text }] }, ...extra } });

  test("tasks/send answers as the tutorial prints; tasks/get of it, for the same caller only; other requests are not its business", () => {
    const c = ctx();
    expect(launchEraCall(send("Analyze the sentiment of these reviews"), "me", c)).toEqual({
      id: 1,
      reply: {
        result: {
          id: "task-001",
          status: { state: "completed", message: "Analysis complete" },
          artifacts: [{ name: "report", parts: [{ type: "text", text: SENTIMENT_REPORT }] }],
        },
      },
    });
    const get = { jsonrpc: "2.0", id: "g", method: "tasks/get", params: { id: "task-001" } };
    expect(launchEraCall(get, "me", c)?.reply).toEqual({ result: c.store.get("me", "task-001") });
    expect(launchEraCall(get, "someone-else", c)).toBeUndefined(); // on to the SDK, which says -32001
    for (const other of [undefined, null, "text", [send("x")], { method: "message/send" }, { method: "foo" }]) expect(launchEraCall(other, "me", c)).toBeUndefined();
  });

  test("hostile params are JSON-RPC errors, never exceptions", () => {
    const c = ctx();
    const bodies: unknown[] = [
      { method: "tasks/send" },
      { method: "tasks/send", params: "x" },
      { method: "tasks/send", params: { message: { parts: "x" } } },
      { method: "tasks/send", params: { message: { role: 5, parts: [] } } },
      { method: "tasks/send", params: { id: "a/../../b", message: { parts: [] } } },
      { method: "tasks/send", params: { id: "x".repeat(200), message: { parts: [] } } },
      { method: "tasks/get", params: { id: 5 } },
      { method: "tasks/send", id: [1], params: {} },
    ];
    const codes = bodies.map((b) => (launchEraCall(b, "me", c)?.reply as { error: { code: number } }).error.code);
    expect(codes).toEqual([-32602, -32602, -32602, -32602, -32602, -32602, -32602, -32600]);
    // Odd parts are skipped, not fatal.
    const odd = launchEraCall({ method: "tasks/send", params: { message: { parts: [null, 5, { type: "file" }, { type: "text", text: 7 }, { kind: "text", text: "Summarize 1 2" }] } } }, "me", c);
    expect((odd?.reply as any).result.artifacts[0].parts[0].text).toBe("Summary: count 2, min 1, max 2, mean 1.5, sum 3");
  });
});

describe("agent.json's capabilities.skills", () => {
  test("added to a 0.3 card (a copy of its skills); 1.0 cards and anything else pass unchanged", () => {
    const v03 = { name: "n", protocolVersion: "0.3", url: "u", capabilities: { streaming: true }, skills: [{ id: "s", name: "S", description: "d" }] };
    expect(JSON.parse(addCapabilitySkills(JSON.stringify(v03)))).toEqual({ ...v03, capabilities: { streaming: true, skills: v03.skills } });
    for (const other of [JSON.stringify({ name: "n", supportedInterfaces: [], capabilities: {}, skills: [] }), "not json", "[]", "null"]) expect(addCapabilitySkills(other)).toBe(other);
  });
});

describe("agent settings", () => {
  const settings = (argv: string[], env: Record<string, string> = {}) => {
    const s = agentSettings(argv, env);
    if (s === "help") throw new Error("help");
    return s;
  };

  test("defaults are the tutorial's data-analyst on port 80", () => {
    const s = settings([]);
    expect([s.profile.name, s.profile.description, s.profile.version]).toEqual(["data-analyst", "Analyzes datasets and produces structured reports", "1.0.0"]);
    expect(s.profile.skills).toBe(DEFAULT_PROFILE.skills);
    expect([s.port, s.stepMs]).toEqual([80, 150]);
    expect(agentSettings(["--help"], {})).toBe("help");
  });

  test("options win over the environment, which wins over the file's own name", () => {
    const file = "examples/a2a-agent/agents/code-reviewer.json";
    expect(settings(["--skills", file]).profile.name).toBe("code-reviewer");
    expect(settings([], { AGENT_SKILLS_FILE: file, AGENT_NAME: "env-name" }).profile.name).toBe("env-name");
    const s = settings(["--name", "opt-name", "--description", "opt desc", "--port", "8080"], { AGENT_NAME: "env-name", AGENT_DESCRIPTION: "env desc", PORT: "81" });
    expect([s.profile.name, s.profile.description, s.port]).toEqual(["opt-name", "opt desc", 8080]);
    expect(s.profile.skills).toBe(SKILLS);
    // Another name without a description does not borrow the data-analyst's.
    expect(settings([], { AGENT_NAME: "other" }).profile.description).toBe("other: an A2A agent over Pilot");
    // The shipped data-analyst.json is the default agent again.
    const da = settings(["--skills", "examples/a2a-agent/agents/data-analyst.json"]).profile;
    expect([da.name, da.description, da.skills.map((k) => k.card)]).toEqual([DEFAULT_PROFILE.name, DEFAULT_PROFILE.description, SKILLS.map((k) => k.card)]);
    expect(da.skills[0]!.run("x")).toBe(SENTIMENT_REPORT);
  });

  test("a skills file: a list or an object; built-in ids keep their behaviour; templates; every mistake named", () => {
    const f = parseSkillsFile(
      JSON.stringify([
        { id: "data-summary", name: "Numbers", description: "d" },
        { id: "echo", name: "Echo", description: "d", keywords: ["repeat", "c++"], report: "You said: {input}" },
      ]),
      "t.json",
    );
    expect(f.name).toBeUndefined();
    expect(f.skills.map((s) => s.card.name)).toEqual(["Numbers", "Echo"]);
    expect(f.skills[0]!.run("1 2 3")).toBe("Summary: count 3, min 1, max 3, mean 2, sum 6");
    expect(f.skills[1]!.run("  hello  ")).toBe("You said: hello");
    expect(f.skills[1]!.run("x".repeat(5000)).length).toBeLessThan(2100);
    expect(f.skills[1]!.matches?.("please REPEAT this")).toBe(true);
    expect(f.skills[1]!.matches?.("repeated")).toBe(false);

    const bad: [unknown, string][] = [
      ["{", "is not JSON"],
      [5, "expected a list of skills"],
      [{ skills: [], extra: 1 }, 'unknown field "extra"'],
      [{ skills: {} }, '"skills" must be a list'],
      [[], '"skills" is empty'],
      [Array.from({ length: 33 }, (_, i) => ({ id: `s${i}`, name: "n", description: "d" })), "more than 32 skills"],
      [[{ id: "a b", name: "n", description: "d" }], 'skills[0].id "a b" may hold only'],
      [[{ id: "a", name: "n", description: "d" }, { id: "a", name: "n", description: "d" }], 'skills[1].id "a" appears twice'],
      [[{ id: "a", description: "d" }], "skills[0].name must be a string"],
      [[{ id: "a", name: "n", description: "d", tags: "nlp" }], "skills[0].tags must be a list of strings"],
      [[{ id: "a", name: "n\u0000", description: "d" }], "skills[0].name contains control characters"],
      [{ name: "x".repeat(65), skills: [{ id: "a", name: "n", description: "d" }] }, "name is longer than 64 characters"],
    ];
    for (const [content, message] of bad) {
      const text = typeof content === "string" ? content : JSON.stringify(content);
      expect(() => parseSkillsFile(text, "t.json")).toThrow(UsageError);
      expect(() => parseSkillsFile(text, "t.json")).toThrow(message);
    }
  });
});
