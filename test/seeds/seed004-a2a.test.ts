/**
 * Seed 004 (A2A agents over Pilot) as written: the tutorial's gateway
 * command, its curls (tasks/send, and tasks/get of that task), its three
 * Python scripts, run unchanged against agents this project ships, and its
 * last step: `pilotctl untrust <id>` on the agent, after which the caller's
 * next request through the gateway is a 502 that says why.
 *
 * Everything runs inside a network namespace this test creates
 * (`ip netns add pilot-a2a-seed-<pid>`) and deletes in afterAll, even on
 * failure: a rendezvous; daemons for data-analyst, code-reviewer and
 * report-writer (tagged nlp) and for the caller, which all three trust;
 * three examples/a2a-agent processes, one per shipped skills file; the
 * gateway on its default 10.4.0.0/16 with real loopback aliases, started
 * once for all three as the seed does; curl; and python3 with requests.
 * `pilotctl` is put on the scripts' PATH: a link to $PILOT_BIN when set,
 * else a two-line wrapper around `bun src/cli/main.ts` (the lab of
 * test/seeds/support.ts, shared with seed000-http.test.ts).
 *
 * The scripts are test/seeds/seed004_*.py; each says in its header what, if
 * anything, was added to the seed's text (only send_a2a_task, which the
 * seed calls but never defines).
 *
 * Skipped, loudly, when not root, when network namespaces are unavailable,
 * or when python3 with requests (Debian: python3-requests) or curl is missing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT } from "../support/cluster.ts";
import type { Spawned } from "../examples/support.ts";
import { SeedLab } from "./support.ts";
import { SENTIMENT_REPORT } from "../../examples/a2a-agent/skills.ts";

const lab = new SeedLab({ name: "pilot-a2a-seed", file: "test/seeds/seed004-a2a.test.ts", untested: "Seed 004's curls and Python scripts are" });
const skipReason = lab.skipReason;
const NS = lab.ns;
const SCRIPTS = join(ROOT, "test/seeds");
const { homes, addresses, nodeIds, pids } = lab;
const agents = new Map<string, Spawned>();
/** The result of the seed's tasks/send, for its tasks/get. */
let sentTask: { id: string } | null = null;

/** Runs argv inside the namespace, to completion. */
const inNs = lab.run.bind(lab);
/** `pilotctl ARGS` (the wrapper on PATH) as the user of `name`, inside the namespace. */
const pilotctl = lab.pilotctl.bind(lab);

/** A python script of test/seeds as the caller's user, inside the namespace. */
function python(script: string) {
  return inNs([lab.python!, join(SCRIPTS, script)], { PILOT_HOME: homes.get("caller")! }, 60_000);
}

const AGENTS = [
  { name: "analyst", hostname: "data-analyst", tags: "nlp,analysis" },
  { name: "reviewer", hostname: "code-reviewer", tags: "nlp,code" },
  { name: "writer", hostname: "report-writer", tags: "nlp,writing" },
] as const;

beforeAll(async () => {
  if (skipReason) return;
  await lab.start();
  for (const { name, hostname, tags } of [...AGENTS, { name: "caller", hostname: "orchestrator", tags: "" }]) await lab.startDaemon(name, hostname, tags);
  for (const { name, hostname } of AGENTS) {
    await lab.trust(name, "caller");
    const agent = lab.spawn([process.execPath, "examples/a2a-agent/agent.ts", "--skills", `examples/a2a-agent/agents/${hostname}.json`], { PILOT_HOME: homes.get(name)! });
    agents.set(hostname, agent);
    await agent.waitFor(new RegExp(`A2A agent ${hostname} listening on pilot port 80 `));
  }
}, 120_000);

afterAll(() => lab.stop(["caller"]), 30_000);

describe.skipIf(skipReason !== null)(`seed 004 as written, in network namespace ${NS}`, () => {
  test("sudo pilotctl gateway start --ports 80 data-analyst code-reviewer report-writer: 10.4.0.1-3, one command", async () => {
    const r = await pilotctl("caller", ["gateway", "start", "--ports", "80", "data-analyst", "code-reviewer", "report-writer", "--json"]);
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    pids.add(r.json.data.pid);
    // The seed's output shape: {"status":"ok","data":{"pid","subnet":"10.4.0.0/16","mappings":[{"local_ip","pilot_addr"}]}}
    expect(r.json.status).toBe("ok");
    expect(r.json.data).toMatchObject({
      pid: expect.any(Number),
      subnet: "10.4.0.0/16",
      mappings: [
        { local_ip: "10.4.0.1", pilot_addr: addresses.get("analyst"), hostname: "data-analyst", ports: [80] },
        { local_ip: "10.4.0.2", pilot_addr: addresses.get("reviewer"), hostname: "code-reviewer", ports: [80] },
        { local_ip: "10.4.0.3", pilot_addr: addresses.get("writer"), hostname: "report-writer", ports: [80] },
      ],
    });
  }, 30_000);

  test("curl http://10.4.0.1/.well-known/agent.json: the seed's card (name, description, version, capabilities.skills)", async () => {
    const r = await inNs(["curl", "-sS", "--max-time", "10", "http://10.4.0.1/.well-known/agent.json"]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const card = JSON.parse(r.stdout);
    expect(card).toMatchObject({
      name: "data-analyst",
      description: "Analyzes datasets and produces structured reports",
      url: "http://10.4.0.1/a2a", // where the seed has pilot://data-analyst/: an http URL that works, as its "constraints" section advises
      version: "1.0.0",
      capabilities: { streaming: true, pushNotifications: false },
    });
    expect(card.capabilities.skills[0]).toMatchObject({
      id: "sentiment-analysis",
      name: "Sentiment Analysis",
      description: "Analyze sentiment of text data and produce reports",
      tags: ["nlp", "analysis", "sentiment"],
    });
  }, 30_000);

  test("curl -X POST http://10.4.0.1/a2a ... tasks/send: the seed's result", async () => {
    // The seed's command, byte for byte (its -d body spans lines).
    const data = `{
"jsonrpc": "2.0",
"id": 1,
"method": "tasks/send",
"params": {
"message": {
"role": "user",
"parts": [{"type": "text", "text": "Analyze the sentiment of these reviews"}]
}
}
}`;
    const r = await inNs(["curl", "-sS", "--max-time", "10", "-X", "POST", "http://10.4.0.1/a2a", "-H", "Content-Type: application/json", "-d", data]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const out = JSON.parse(r.stdout);
    expect(out).toEqual({
      jsonrpc: "2.0",
      id: 1,
      result: {
        id: expect.any(String),
        status: { state: "completed", message: "Analysis complete" },
        artifacts: [{ name: "report", parts: [{ type: "text", text: "Sentiment: 73% positive, 18% neutral, 9% negative" }] }],
      },
    });
    expect(Object.keys(out.result)).toEqual(["id", "status", "artifacts"]);
    sentTask = out.result;
  }, 30_000);

  test("curl -X POST http://10.4.0.1/a2a ... tasks/get: the task just sent, again; an unknown method is -32601", async () => {
    expect(sentTask).not.toBeNull();
    const get = (body: unknown) => inNs(["curl", "-sS", "--max-time", "10", "-X", "POST", "http://10.4.0.1/a2a", "-H", "Content-Type: application/json", "-d", JSON.stringify(body)]);
    const r = await get({ jsonrpc: "2.0", id: 2, method: "tasks/get", params: { id: sentTask!.id } });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(r.stdout)).toEqual({ jsonrpc: "2.0", id: 2, result: sentTask });
    const unknown = await get({ jsonrpc: "2.0", id: 3, method: "tasks/frobnicate", params: {} });
    expect(JSON.parse(unknown.stdout)).toMatchObject({ jsonrpc: "2.0", id: 3, error: { code: -32601 } });
  }, 30_000);

  test("the seed's Python requests client (discover_agent, send_task) runs to the end", async () => {
    const r = await python("seed004_requests_client.py");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout).toBe(
      ["Agent: data-analyst", "Skills: ['Sentiment Analysis', 'Data Summarization']", "Status: completed", `Output: ${SENTIMENT_REPORT}`, ""].join("\n"),
    );
  }, 60_000);

  test("the seed's three-agent orchestrator runs to the end; each agent did its task", async () => {
    const r = await python("seed004_orchestrator.py");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout).toBe(
      [
        "data-analyst: ['Sentiment Analysis', 'Data Summarization']",
        "code-reviewer: ['Code Review', 'Security Audit']",
        "report-writer: ['Report Writing']",
        "",
      ].join("\n"),
    );
    // The tasks it sent (and printed nothing about), as each agent logged them.
    await agents.get("data-analyst")!.waitFor(/POST \/a2a tasks\/send from \S+ -> 200 /);
    expect(agents.get("data-analyst")!.stdout).toMatch(/task \S+ \(sentiment-analysis\) -> completed: Sentiment: 73% positive/);
    await agents.get("code-reviewer")!.waitFor(/task \S+ \(code-review\) -> completed: Review of "Review the analysis code": /);
    await agents.get("report-writer")!.waitFor(new RegExp(`task \\S+ \\(report-writing\\) -> completed: Report: Write a report based on: ${SENTIMENT_REPORT}`));
    // Every request came through the gateway, i.e. from the caller's node.
    const caller = addresses.get("caller")!.replace(/\./g, "\\.");
    expect(agents.get("report-writer")!.stdout).toMatch(new RegExp(`a2a-agent: POST /a2a tasks/send from ${caller}:\\d+ -> 200`));
  }, 60_000);

  test("the seed's discover_a2a_agents('nlp') (pilotctl --json peers --search, gateway map) runs to the end and prints real polo scores", async () => {
    // Receipts signed by both parties of a task (with the daemons' own keys, as the task service signs them):
    // the caller accepted the analyst's and the reviewer's results and rejected the writer's; the
    // reviewer and the writer each accepted work from the analyst. All are newcomers (registered
    // minutes ago), so each receipt weighs little: the analyst 3, the reviewer 1, the writer 0.
    const spec = (submitter: string, worker: string, outcome: string) => `${homes.get(submitter)}:${nodeIds.get(submitter)}:${homes.get(worker)}:${nodeIds.get(worker)}:${outcome}`;
    const receipts = await inNs([
      process.execPath,
      join(SCRIPTS, "seed004_receipts.ts"),
      lab.registry,
      spec("caller", "analyst", "accepted"),
      spec("caller", "reviewer", "accepted"),
      spec("caller", "writer", "rejected"),
      spec("reviewer", "analyst", "accepted"),
      spec("writer", "analyst", "accepted"),
    ]);
    expect({ code: receipts.code, stderr: receipts.stderr }).toEqual({ code: 0, stderr: "" });
    expect(receipts.stdout.trim().split("\n").map((l) => JSON.parse(l).recorded)).toEqual([true, true, true, true, true]);
    // What the script reads: polo_score, a number, on each peer.
    const peers = await pilotctl("caller", ["--json", "peers", "--search", "nlp"]);
    expect(peers.json.data.peers.map((p: any) => [p.hostname, p.polo_score])).toEqual([
      ["data-analyst", 3],
      ["code-reviewer", 1],
      ["report-writer", 0],
    ]);
    // One agent unmapped first, so that the script's own `gateway map` has something to do.
    expect((await pilotctl("caller", ["--json", "gateway", "unmap", "code-reviewer"])).code).toBe(0);

    const r = await python("seed004_discover.py");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout).toBe(
      [
        "data-analyst (polo: 3.0)",
        " - Sentiment Analysis: Analyze sentiment of text data and produce reports",
        " - Data Summarization: Produce statistical summaries of tabular data",
        "code-reviewer (polo: 1.0)",
        " - Code Review: Review source code and list the problems found",
        " - Security Audit: Look for injection, secrets and unsafe input handling",
        "report-writer (polo: 0.0)",
        " - Report Writing: Write a short report from the findings it is given",
        "",
      ].join("\n"),
    );
    const list = await pilotctl("caller", ["--json", "gateway", "list"]);
    expect(list.json.data.mappings.map((m: any) => m.hostname).sort()).toEqual(["code-reviewer", "data-analyst", "report-writer"]);
  }, 60_000);

  test("pilotctl untrust <id> on the agent: the caller's next request through the gateway is a 502 that names why", async () => {
    const before = await inNs(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://10.4.0.1/.well-known/agent.json"]);
    expect(before.stdout).toBe("200");
    // The seed's `pilotctl untrust 42`, run by the agent's owner with the caller's node id.
    const u = await pilotctl("analyst", ["untrust", String(nodeIds.get("caller"))]);
    expect({ code: u.code, stderr: u.stderr }).toEqual({ code: 0, stderr: "" });
    const started = performance.now();
    const after = await inNs(["curl", "-sS", "-i", "--max-time", "10", "http://10.4.0.1/.well-known/agent.json"]);
    expect(performance.now() - started).toBeLessThan(5000); // at once, not a timeout (slack for a loaded machine)
    expect(after.stdout).toStartWith("HTTP/1.1 502 Bad Gateway");
    expect(after.stdout).toMatch(/X-Pilot-Error: (not_found|not_trusted)\r\n/);
    expect(after.stdout).toContain(`data-analyst (${addresses.get("analyst")})`);
    expect(after.stdout).toMatch(/trust/);
    expect(after.stdout).toContain('pilot handshake data-analyst "why"');
    // The other agents still answer: the revocation is the analyst's alone.
    const other = await inNs(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://10.4.0.3/.well-known/agent.json"]);
    expect(other.stdout).toBe("200");
  }, 30_000);
});
