/**
 * examples/a2a-agent run for real: the agent as the user of daemon "agent"
 * (hostname data-analyst, tags nlp analysis), called from daemon "client",
 * which it trusts. The caller is the official @a2a-js/sdk client
 * (`ClientFactory`), unchanged except for the fetch it is given: until a
 * gateway maps the agent to a local IP, that fetch is `pilot.fetch`, a
 * standard fetch whose connections go through the client's daemon
 * (the SDK's `fetchImpl` option). test/a2a/gateway.test.ts does the same
 * through the gateway (`pilot gateway start`) with no custom fetch at all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TaskState, type AgentCard, type StreamResponse, type Task } from "@a2a-js/sdk";
import { DefaultAgentCardResolver, type Client } from "@a2a-js/sdk/client";
import { connect, type Driver } from "../../src/driver/index.ts";
import { clientFactory, pilotFetchImpl, userMessage } from "../../examples/a2a-agent/client.ts";
import { SENTIMENT_REPORT } from "../../examples/a2a-agent/skills.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { runExample, stopAll, type Spawned } from "../examples/support.ts";

const STEP_MS = 100;
let c: Cluster;
let agent: Spawned;
let pilot: Driver; // the client daemon's SDK connection

beforeAll(async () => {
  c = await startCluster({
    daemons: [
      { name: "agent", hostname: "data-analyst", tags: ["nlp", "analysis"] },
      { name: "client", hostname: "orchestrator" },
      { name: "stranger", hostname: "stranger", tags: ["nlp"] },
    ],
  });
  await c.trust("agent", "client");
  agent = runExample("a2a-agent/agent.ts", c.daemon("agent"), { env: { STEP_MS: String(STEP_MS) } });
  await agent.waitFor(/A2A agent data-analyst listening on pilot port 80/);
  pilot = await connect({ home: c.daemon("client").home });
});

afterAll(async () => {
  await pilot?.close();
  await stopAll();
  await c?.stop();
});

const text = (parts: { content?: { $case: string; value?: unknown } }[] | undefined) =>
  (parts ?? []).map((p) => (p.content?.$case === "text" ? String(p.content.value) : "")).join("");

async function sdkClient(base = "http://data-analyst"): Promise<{ card: AgentCard; client: Client }> {
  const fetchImpl = pilotFetchImpl(pilot);
  const card = await new DefaultAgentCardResolver({ fetchImpl }).resolve(base);
  return { card, client: await clientFactory(fetchImpl).createFromAgentCard(card) };
}

/** One JSON-RPC call over Pilot, as a hand-written client would make it. */
async function rpc(method: string, params: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return pilot.fetch("http://data-analyst/a2a", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify({ jsonrpc: "2.0", id: 7, method, params }),
  });
}

async function rpcJson(method: string, params: unknown, headers: Record<string, string> = {}): Promise<any> {
  return (await rpc(method, params, headers)).json();
}

/** The `data:` payloads of an SSE body, in order. */
function sseEvents(body: string): any[] {
  return body
    .split("\n\n")
    .map((block) => block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join(""))
    .filter((d) => d !== "")
    .map((d) => JSON.parse(d));
}

async function cardAt(path: string, headers: Record<string, string> = {}): Promise<any> {
  const res = await pilot.fetch(`http://data-analyst${path}`, { headers });
  expect(res.status).toBe(200);
  return res.json();
}

describe("the official SDK client, over Pilot", () => {
  test("card: A2A 1.0 at /.well-known/agent-card.json, advertising the URL the client used", async () => {
    const { card, client } = await sdkClient();
    expect(card.name).toBe("data-analyst");
    expect(card.description).toBe("Analyzes datasets and produces structured reports");
    expect(card.supportedInterfaces.map((i) => [i.url, i.protocolBinding, i.protocolVersion])).toEqual([
      ["http://data-analyst/a2a", "JSONRPC", "1.0"],
      ["http://data-analyst/a2a", "JSONRPC", "0.3"],
    ]);
    expect(card.capabilities?.streaming).toBe(true);
    expect(card.skills.map((s) => s.id)).toEqual(["sentiment-analysis", "data-summary"]);
    expect(card.skills[0]!.tags).toEqual(["nlp", "analysis", "sentiment"]);
    expect([client.transport.protocolName, client.transport.protocolVersion]).toEqual(["JSONRPC", "1.0"]);

    // Named by address instead, the card names the agent that way (a URL host cannot hold "0:", so NNNN.HHHH.LLLL).
    const byAddress = await sdkClient(`http://${c.daemon("agent").address.slice(2)}`);
    expect(byAddress.card.supportedInterfaces[0]!.url).toBe(`http://0.0.0.${c.daemon("agent").nodeId}/a2a`);
  });

  test("SendMessage returns the completed task with the seed's report; GetTask returns it again", async () => {
    const { client } = await sdkClient();
    const sent = (await client.sendMessage(
      { tenant: "", message: userMessage("Analyze the sentiment of these reviews"), configuration: undefined, metadata: undefined },
      { signal: AbortSignal.timeout(15_000) },
    )) as Task;
    expect(sent.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(text(sent.status?.message?.parts)).toBe("Analysis complete");
    expect(sent.artifacts.map((a) => [a.name, text(a.parts)])).toEqual([["report", SENTIMENT_REPORT]]);
    expect(sent.metadata).toEqual({ skill: "sentiment-analysis" });

    const got = await client.getTask({ id: sent.id, tenant: "", historyLength: undefined });
    expect(got.id).toBe(sent.id);
    expect(got.contextId).toBe(sent.contextId);
    expect(got.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(got.artifacts.map((a) => text(a.parts))).toEqual([SENTIMENT_REPORT]);
    expect(text(got.history[0]?.parts)).toBe("Analyze the sentiment of these reviews");

    // The second skill, picked by the request's words.
    const summary = (await client.sendMessage({ tenant: "", message: userMessage("Summarize: 12, 15, 9, 20"), configuration: undefined, metadata: undefined })) as Task;
    expect(summary.artifacts.map((a) => text(a.parts))).toEqual(["Summary: count 4, min 9, max 20, mean 14, sum 56"]);

    // A task asked not to wait can be canceled between its steps.
    const pending = (await client.sendMessage({
      tenant: "",
      message: userMessage("Analyze this"),
      configuration: { returnImmediately: true, acceptedOutputModes: [], taskPushNotificationConfig: undefined },
      metadata: undefined,
    })) as Task;
    expect(pending.status?.state).toBe(TaskState.TASK_STATE_SUBMITTED);
    const canceled = await client.cancelTask({ id: pending.id, tenant: "", metadata: undefined });
    expect([TaskState.TASK_STATE_CANCELED]).toContain(canceled.status!.state);
  });

  test("SendStreamingMessage: SSE events arrive one by one as the agent works (task, 3 x working, artifact, completed)", async () => {
    const { client } = await sdkClient();
    const started = performance.now();
    const events: { at: number; event: StreamResponse }[] = [];
    for await (const event of client.sendMessageStream({ tenant: "", message: userMessage("Analyze the sentiment of these reviews"), configuration: undefined, metadata: undefined })) {
      events.push({ at: performance.now() - started, event });
    }
    const shape = events.map(({ event: { payload: p } }) =>
      p?.$case === "task"
        ? `task ${TaskState[p.value.status!.state]}`
        : p?.$case === "statusUpdate"
          ? `status ${TaskState[p.value.status!.state]} ${text(p.value.status?.message?.parts)}`
          : p?.$case === "artifactUpdate"
            ? `artifact ${p.value.artifact?.name} ${text(p.value.artifact?.parts)}`
            : String(p?.$case),
    );
    expect(shape).toEqual([
      "task TASK_STATE_SUBMITTED",
      "status TASK_STATE_WORKING Reading the text",
      "status TASK_STATE_WORKING Scoring sentiment",
      "status TASK_STATE_WORKING Writing the report",
      `artifact report ${SENTIMENT_REPORT}`,
      "status TASK_STATE_COMPLETED Analysis complete",
    ]);
    // Not buffered: the first event came long before the last (3 steps of STEP_MS each in between).
    expect(events.at(-1)!.at - events[0]!.at).toBeGreaterThan(2 * STEP_MS);
    expect(events[1]!.at - events[0]!.at).toBeGreaterThan(STEP_MS / 2);
  });

  test("examples/a2a-agent/client.ts does card, send, get and stream, by hostname and by address", async () => {
    for (const target of ["data-analyst", c.daemon("agent").address]) {
      const run = runExample("a2a-agent/client.ts", c.daemon("client"), { args: [target] });
      const code = await run.exitCode();
      if (code !== 0) throw new Error(`client.ts ${target} exited ${code}:\n${run.output}`);
      expect(run.stdout).toMatch(/^card: {3}data-analyst 1\.0\.0 at http:\/\/\S+\/a2a \(JSONRPC 1\.0\)\n/);
      expect(run.stdout).toContain("skills: Sentiment Analysis (sentiment-analysis), Data Summarization (data-summary)");
      expect(run.stdout).toMatch(new RegExp(`send: {3}task \\S+ TASK_STATE_COMPLETED: report: ${SENTIMENT_REPORT}`));
      expect(run.stdout).toMatch(/get: {4}task \S+ TASK_STATE_COMPLETED/);
      expect(run.stdout.match(/^stream: .*$/gm)?.length).toBe(6);
      expect(run.stdout).toContain("all A2A calls succeeded");
    }
  });
});

describe("the Agent Card", () => {
  test("its URL follows the Host header (and X-Forwarded-Host/Proto), never an address of the agent's machine", async () => {
    const url = async (headers: Record<string, string>) => (await cardAt("/.well-known/agent-card.json", { "A2A-Version": "1.0", ...headers })).supportedInterfaces[0].url;
    expect(await url({})).toBe("http://data-analyst/a2a");
    expect(await url({ Host: "10.4.0.1" })).toBe("http://10.4.0.1/a2a"); // what a gateway's client sends
    expect(await url({ Host: "127.77.0.3:8080" })).toBe("http://127.77.0.3:8080/a2a");
    expect(await url({ Host: "10.4.0.1", "X-Forwarded-Host": "agents.example.org", "X-Forwarded-Proto": "https" })).toBe("https://agents.example.org/a2a");
    expect(await url({ Host: "bad host/with spaces" })).toBe("http://data-analyst/a2a");
    // The legacy (0.3-shaped) card too.
    expect((await cardAt("/.well-known/agent.json", { Host: "10.4.0.2" })).url).toBe("http://10.4.0.2/a2a");

    // An HTTP/1.0 request without any Host header: the agent names itself by its Pilot hostname.
    const socket = await pilot.dial("data-analyst", 80);
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    const ended = new Promise((resolve) => socket.once("close", resolve));
    socket.end("GET /.well-known/agent-card.json HTTP/1.0\r\nA2A-Version: 1.0\r\n\r\n");
    await ended;
    const raw = Buffer.concat(chunks).toString("utf8");
    expect(raw.startsWith("HTTP/1.1 200 ")).toBe(true);
    const card = JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4));
    expect(card.supportedInterfaces[0].url).toBe("http://data-analyst/a2a");
    expect(raw).not.toMatch(/localhost|127\.0\.0\.1|0\.0\.0\.0/);
  });

  test("legacy: /.well-known/agent.json, and a 0.3-shaped card for clients that send no A2A-Version", async () => {
    const v03 = await cardAt("/.well-known/agent.json");
    expect(v03).toMatchObject({ name: "data-analyst", url: "http://data-analyst/a2a", protocolVersion: "0.3", preferredTransport: "JSONRPC", version: "1.0.0" });
    expect(v03.capabilities.streaming).toBe(true);
    expect(v03.skills.map((s: any) => s.name)).toEqual(["Sentiment Analysis", "Data Summarization"]);
    expect(await cardAt("/.well-known/agent-card.json")).toMatchObject({ url: "http://data-analyst/a2a", protocolVersion: "0.3" });
    const v1 = await cardAt("/.well-known/agent.json", { "A2A-Version": "1.0" });
    expect(v1.url).toBeUndefined();
    expect(v1.supportedInterfaces).toHaveLength(2);

    const missing = await pilot.fetch("http://data-analyst/nope");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "not found", agent_card: "/.well-known/agent-card.json" });
  });
});

describe("A2A 0.3 clients, unchanged (no A2A-Version header)", () => {
  test("message/send, tasks/get and message/stream, in 0.3 shapes", async () => {
    const message = { kind: "message", messageId: "m-03", role: "user", parts: [{ kind: "text", text: "Analyze the sentiment of these reviews" }] };
    const sent = await rpcJson("message/send", { message });
    expect(sent.id).toBe(7);
    expect(sent.result).toMatchObject({ kind: "task", status: { state: "completed" } });
    expect(sent.result.artifacts[0]).toMatchObject({ name: "report", parts: [{ kind: "text", text: SENTIMENT_REPORT }] });

    const got = await rpcJson("tasks/get", { id: sent.result.id });
    expect(got.result).toMatchObject({ kind: "task", id: sent.result.id, status: { state: "completed" } });

    const res = await rpc("message/stream", { message: { ...message, messageId: "m-03s" } }, { Accept: "text/event-stream" });
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    const events = sseEvents(await res.text());
    expect(events.every((e) => e.jsonrpc === "2.0" && e.id === 7)).toBe(true);
    expect(events.map((e) => `${e.result.kind}${e.result.status ? ` ${e.result.status.state}` : ""}${e.result.final ? " final" : ""}`)).toEqual([
      "task submitted",
      "status-update working",
      "status-update working",
      "status-update working",
      "artifact-update",
      "status-update completed final",
    ]);

    // With A2A-Version: 1.0 the same endpoint speaks 1.0, and the 0.3 names are unknown.
    const v1 = await rpcJson("message/send", { message }, { "A2A-Version": "1.0" });
    expect(v1.error.code).toBe(-32601);
  });
});

describe("the tutorial's launch-era shapes (seed 004), on the same paths", () => {
  test("tasks/send: the completed task with its report, exactly as the tutorial prints it; tasks/get finds it again", async () => {
    const body = {
      jsonrpc: "2.0",
      id: 1,
      method: "tasks/send",
      params: { message: { role: "user", parts: [{ type: "text", text: "Analyze the sentiment of these reviews" }] } },
    };
    const res = await pilot.fetch("http://data-analyst/a2a", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("application/json");
    const sent = (await res.json()) as any;
    expect(sent).toEqual({
      jsonrpc: "2.0",
      id: 1,
      result: {
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        status: { state: "completed", message: "Analysis complete" },
        artifacts: [{ name: "report", parts: [{ type: "text", text: SENTIMENT_REPORT }] }],
      },
    });
    const got = await rpcJson("tasks/get", { id: sent.result.id });
    expect(got).toEqual({ jsonrpc: "2.0", id: 7, result: sent.result });

    // The second skill by its words; a client-chosen id (as the launch-era spec allowed) is kept.
    const summary = await rpcJson("tasks/send", { id: "task-001", message: { role: "user", parts: [{ type: "text", text: "Summarize: 12, 15, 9, 20" }] } });
    expect(summary.result).toEqual({
      id: "task-001",
      status: { state: "completed", message: "Analysis complete" },
      artifacts: [{ name: "report", parts: [{ type: "text", text: "Summary: count 4, min 9, max 20, mean 14, sum 56" }] }],
    });
    expect((await rpcJson("tasks/get", { id: "task-001" })).result.id).toBe("task-001");
    // The 0.3 kind:"text" parts work too; so does the A2A-Version: 1.0 header (tasks/send is no 1.0 method, so nothing clashes).
    const kinds = await rpcJson("tasks/send", { message: { role: "user", parts: [{ kind: "text", text: "hi" }] } }, { "A2A-Version": "1.0" });
    expect(kinds.result.status.state).toBe("completed");
  });

  test("errors: unknown task -32001, bad params -32602, bad id -32600, unknown method -32601, bad JSON -32700, GET 405, a body over 100 KiB 413", async () => {
    const unknown = await rpcJson("tasks/get", { id: "no-such-task" });
    expect(unknown).toEqual({ jsonrpc: "2.0", id: 7, error: { code: -32001, message: "Task not found: no-such-task" } });
    expect((await rpcJson("tasks/get", {})).error).toEqual({ code: -32602, message: "Invalid params: params.id (the task's id) is required" });
    expect((await rpcJson("tasks/send", { message: { role: "user" } })).error).toEqual({ code: -32602, message: "Invalid params: params.message.parts must be a list" });
    expect((await rpcJson("tasks/send", { id: "../etc/passwd", message: { parts: [] } })).error.code).toBe(-32602);
    const badId = await (await pilot.fetch("http://data-analyst/a2a", { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"jsonrpc":"2.0","id":{"x":1},"method":"tasks/send","params":{}}' })).json();
    expect(badId).toEqual({ jsonrpc: "2.0", id: null, error: { code: -32600, message: "Invalid Request: id must be a string, a number or null" } });
    expect(await rpcJson("tasks/sendSubscribe", {})).toEqual({ jsonrpc: "2.0", id: 7, error: { code: -32601, message: "Method not found: tasks/sendSubscribe" } });

    const post = (body: string) => pilot.fetch("http://data-analyst/a2a", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    const bad = await post('{"jsonrpc": "2.0", "id": 1, "method": ');
    expect(bad.status).toBe(200);
    expect(await bad.json()).toEqual({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Invalid JSON payload." } });

    const get = await pilot.fetch("http://data-analyst/a2a");
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    expect(((await get.json()) as any).allow).toBe("POST");

    const big = await post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tasks/send", params: { message: { role: "user", parts: [{ type: "text", text: "x".repeat(110 * 1024) }] } } }));
    expect(big.status).toBe(413);
    expect(await big.json()).toEqual({ jsonrpc: "2.0", id: null, error: { code: -32600, message: "Request body larger than 102400 bytes" } });
    // The agent still answers.
    expect((await rpcJson("tasks/send", { message: { role: "user", parts: [{ type: "text", text: "hi" }] } })).result.status.state).toBe("completed");
  });

  test("/.well-known/agent.json: the tutorial's capabilities.skills beside everything a 0.3 client reads; agent-card.json unchanged", async () => {
    const card = await cardAt("/.well-known/agent.json");
    // What the tutorial's Python reads.
    expect(card.name).toBe("data-analyst");
    expect(card.capabilities.skills.map((s: any) => [s.name, s.description])).toEqual([
      ["Sentiment Analysis", "Analyze sentiment of text data and produce reports"],
      ["Data Summarization", "Produce statistical summaries of tabular data"],
    ]);
    expect(card.capabilities.skills[0]).toMatchObject({ id: "sentiment-analysis", tags: ["nlp", "analysis", "sentiment"] });
    // What 0.3 clients read there, as before.
    expect(card).toMatchObject({
      description: "Analyzes datasets and produces structured reports",
      url: "http://data-analyst/a2a",
      version: "1.0.0",
      protocolVersion: "0.3",
      preferredTransport: "JSONRPC",
      capabilities: { streaming: true, pushNotifications: false },
      defaultInputModes: ["text/plain"],
      defaultOutputModes: ["text/plain"],
    });
    expect(card.skills).toEqual(card.capabilities.skills);
    // The 0.3 card at the 0.3 path, and every 1.0 card, have no capabilities.skills: only agent.json's legacy shape does.
    expect((await cardAt("/.well-known/agent-card.json")).capabilities).toEqual({ streaming: true, pushNotifications: false });
    expect((await cardAt("/.well-known/agent.json", { "A2A-Version": "1.0" })).capabilities.skills).toBeUndefined();
  });

  test("the same program as other agents: --skills FILE, AGENT_NAME, AGENT_SKILLS_FILE and PORT; each card says its own name", async () => {
    const reviewer = runExample("a2a-agent/agent.ts", c.daemon("agent"), { args: ["--skills", "examples/a2a-agent/agents/code-reviewer.json", "--port", "8081"] });
    const writer = runExample("a2a-agent/agent.ts", c.daemon("agent"), {
      env: { AGENT_NAME: "writer-2", AGENT_SKILLS_FILE: "examples/a2a-agent/agents/report-writer.json", PORT: "8082" },
    });
    try {
      await reviewer.waitFor(/A2A agent code-reviewer listening on pilot port 8081 /);
      await writer.waitFor(/A2A agent writer-2 listening on pilot port 8082 /);
      expect(reviewer.stdout).toContain("  skills: Code Review (code-review), Security Audit (security-audit)\n");

      const rc = (await (await pilot.fetch("http://data-analyst:8081/.well-known/agent.json")).json()) as any;
      expect(rc).toMatchObject({ name: "code-reviewer", description: "Reviews code and analysis scripts for bugs, style and security issues", url: "http://data-analyst:8081/a2a" });
      expect(rc.capabilities.skills.map((s: any) => s.name)).toEqual(["Code Review", "Security Audit"]);
      const wc = (await (await pilot.fetch("http://data-analyst:8082/.well-known/agent-card.json", { headers: { "A2A-Version": "1.0" } })).json()) as any;
      expect(wc).toMatchObject({ name: "writer-2", description: "Turns analyses and reviews into short written reports" });
      expect(wc.skills.map((s: any) => s.id)).toEqual(["report-writing"]);

      const send = async (port: number, text: string) =>
        (await (
          await pilot.fetch(`http://data-analyst:${port}/a2a`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tasks/send", params: { message: { role: "user", parts: [{ type: "text", text }] } } }),
          })
        ).json()) as any;
      const review = await send(8081, "Audit this handler for injection");
      expect(review.result.status).toEqual({ state: "completed", message: "Audit complete" });
      expect(review.result.artifacts[0].parts[0].text).toStartWith('Security audit of "Audit this handler for injection": ');
      const report = await send(8082, `Write a report based on: ${SENTIMENT_REPORT}`);
      expect(report.result.status).toEqual({ state: "completed", message: "Report written" });
      expect(report.result.artifacts[0].parts[0].text).toBe(`Report: Write a report based on: ${SENTIMENT_REPORT}`);

      // The official SDK client reaches a configured agent just the same.
      const { client } = await sdkClient("http://data-analyst:8081");
      const task = (await client.sendMessage({ tenant: "", message: userMessage("Review the analysis code"), configuration: undefined, metadata: undefined })) as Task;
      expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
      expect(text(task.status?.message?.parts)).toBe("Review complete");
      expect(task.metadata).toEqual({ skill: "code-review" });
    } finally {
      await reviewer.stop();
      await writer.stop();
    }
  });

  test("bad options: one line and exit 2, before any daemon is needed; a taken port: one line (message and hint) and exit 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pilot-a2a-opts-"));
    try {
      const badJson = join(dir, "bad.json");
      writeFileSync(badJson, "{ not json");
      const noSkills = join(dir, "empty.json");
      writeFileSync(noSkills, '{"name": "x", "skills": []}');
      const typo = join(dir, "typo.json");
      writeFileSync(typo, '[{"id": "a", "name": "A", "description": "d", "reprot": "r"}]');
      const cases: [string[], Record<string, string>, RegExp][] = [
        [["--port", "99999"], {}, /^error: --port "99999" is not a Pilot port \(1-65535\) \(see --help\)\n$/],
        [[], { PORT: "http" }, /^error: PORT "http" is not a Pilot port \(1-65535\)/],
        [["--bogus"], {}, /^error: Unknown option '--bogus'/],
        [["extra"], {}, /^error: Unexpected argument 'extra'/],
        [["--skills", join(dir, "missing.json")], {}, /^error: --skills \S+missing\.json: no such file/],
        [[], { AGENT_SKILLS_FILE: badJson }, /^error: AGENT_SKILLS_FILE \S+bad\.json is not JSON: /],
        [["--skills", noSkills], {}, /^error: --skills \S+empty\.json: "skills" is empty: an agent needs at least one skill/],
        [["--skills", typo], {}, /^error: --skills \S+typo\.json: skills\[0\]: unknown field "reprot"/],
        [[], { AGENT_NAME: " " }, /^error: AGENT_NAME is empty/],
        [[], { STEP_MS: "-1" }, /^error: STEP_MS "-1" is not a pause in milliseconds/],
      ];
      for (const [args, env, expected] of cases) {
        const run = runExample("a2a-agent/agent.ts", null, { args, env: { PILOT_HOME: join(dir, "no-daemon"), ...env } });
        expect({ args, env, code: await run.exitCode() }).toEqual({ args, env, code: 2 });
        expect(run.stdout).toBe("");
        expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
        expect(run.stderr).toMatch(expected);
      }
      const help = runExample("a2a-agent/agent.ts", null, { args: ["--help"] });
      expect(await help.exitCode()).toBe(0);
      expect(help.stdout).toContain("--skills FILE");

      // Port 80 of this daemon is the data-analyst's.
      const taken = runExample("a2a-agent/agent.ts", c.daemon("agent"));
      expect(await taken.exitCode()).toBe(1);
      expect(taken.stderr).toBe("error: port 80 is already in use; hint: pick another port, or stop the program that listens on it (this agent: --port N or PORT=N)\n");
      expect(taken.stdout).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("pilot a2a discover", () => {
  test("finds the tagged agent over Pilot and prints its skills; a non-A2A node is listed with the reason; private strangers never show", async () => {
    // A second nlp node that trusts the client but serves plain HTTP on port 80, not A2A.
    await c.startDaemon({ name: "web", hostname: "nlp-web", tags: ["nlp"] });
    await c.trust("web", "client");
    const web = runExample("http-server.ts", c.daemon("web"));
    try {
      await web.waitFor(/listening on pilot port 80/);
      const r = await c.pilot("client", ["a2a", "discover", "--tag", "nlp"]);
      expect(r.code).toBe(0);
      const data = r.json.data;
      expect(data.tag).toBe("nlp");
      expect(data.total).toBe(2);
      expect(data.agents).toHaveLength(1);
      const a = data.agents[0];
      expect(a).toMatchObject({
        node_id: c.daemon("agent").nodeId,
        address: c.daemon("agent").address,
        hostname: "data-analyst",
        tags: ["nlp", "analysis"],
        card_url: "http://data-analyst/.well-known/agent-card.json",
        name: "data-analyst",
        version: "1.0.0",
        url: "http://data-analyst/a2a",
        streaming: true,
        polo_score: 0,
        local_ip: null, // no gateway runs here (test/a2a/gateway.test.ts has one)
        local_url: null,
      });
      expect(data.gateway).toBe(false);
      expect(a.skills.map((s: any) => [s.id, s.name])).toEqual([
        ["sentiment-analysis", "Sentiment Analysis"],
        ["data-summary", "Data Summarization"],
      ]);
      expect(data.failed).toEqual([
        expect.objectContaining({ hostname: "nlp-web", code: "not_a2a", reason: expect.stringContaining("/.well-known/agent-card.json: HTTP 404") }),
      ]);
      expect(r.stdout).not.toContain("stranger");

      const t = await c.pilot("client", ["a2a", "discover", "--tag", "#NLP"], { json: false });
      expect(t.code).toBe(0);
      expect(t.stdout).toContain(`data-analyst  ${c.daemon("agent").address}  #nlp #analysis\n`);
      expect(t.stdout).toContain("  card:    data-analyst 1.0.0: Analyzes datasets and produces structured reports\n");
      expect(t.stdout).toContain("  url:     http://data-analyst/a2a  (JSONRPC; A2A 1.0, 0.3; streaming)\n");
      expect(t.stdout).toContain("  polo:    0  (its reputation as a worker, 0-100; pilot reputation data-analyst)\n");
      expect(t.stdout).toContain("    - Sentiment Analysis (sentiment-analysis): Analyze sentiment of text data and produce reports\n");
      expect(t.stdout).toContain("    - Data Summarization (data-summary): Produce statistical summaries of tabular data\n");
      expect(t.stdout).toMatch(/nlp-web {2}\S+ {2}#nlp\n {2}not listed: no Agent Card on port 80 \(.*\) \(not_a2a\)/);
      expect(t.stdout).toContain("1 A2A agent among 2 visible nodes tagged #nlp");
      expect(t.stdout).not.toContain("stranger");
      expect(t.stderr).toContain("reading the Agent Cards of 2 nodes tagged #nlp over Pilot port 80...");
    } finally {
      await web.stop();
    }
  });

  test("a node the agent does not trust sees no agent; a visible node without a listener is connection_refused", async () => {
    const r = await c.pilot("stranger", ["a2a", "discover", "--tag", "nlp"]);
    expect(r.code).toBe(0);
    expect(r.json.data).toEqual({ tag: "nlp", port: 80, agents: [], failed: [], total: 0, gateway: false });
    const t = await c.pilot("stranger", ["a2a", "discover", "--tag", "nlp"], { json: false });
    expect(t.stdout).toBe("no visible node is tagged #nlp (private nodes show up only once they trust you)\n");
    // Nor can it reach the agent by address: no trust, no connection.
    const call = runExample("a2a-agent/client.ts", c.daemon("stranger"), { args: [c.daemon("agent").address] });
    expect(await call.exitCode()).toBe(1);
    expect(call.stderr).toMatch(/^a2a-client: /);

    // A public node tagged nlp is visible to everyone; nothing listens on its port 80.
    await c.startDaemon({ name: "pub", hostname: "pub-nlp", tags: ["nlp"], public: true });
    const p = await c.pilot("stranger", ["a2a", "discover", "--tag", "nlp", "--timeout", "3s"]);
    expect(p.json.data.agents).toEqual([]);
    expect(p.json.data.failed).toEqual([expect.objectContaining({ hostname: "pub-nlp", public: true, code: "connection_refused" })]);
    await c.stopDaemon("pub");
  });

  test("usage: --tag is required and must be a tag; without a daemon, not_running", async () => {
    let r = await c.pilot("client", ["a2a", "discover"]);
    expect(r.code).toBe(2);
    expect(r.json).toMatchObject({ code: "usage", message: "--tag is required" });
    r = await c.pilot("client", ["a2a", "discover", "--tag", "no spaces"]);
    expect(r.code).toBe(2);
    expect(r.json.code).toBe("invalid_argument");
    r = await c.pilot("client", ["a2a", "discover", "--tag", "nlp", "--port", "0"]);
    expect(r.json.code).toBe("invalid_argument");
    r = await c.pilot("client", ["a2a", "discover", "--tag", "nlp", "--map"]);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ code: "not_running", message: "--map needs a running gateway, and none is running" });
    const home = mkdtempSync(join(tmpdir(), "pilot-nodaemon-"));
    try {
      r = await c.pilot("client", ["a2a", "discover", "--tag", "nlp"], { env: { PILOT_HOME: home } });
      expect(r.code).toBe(1);
      expect(r.json).toMatchObject({ code: "not_running", hint: "start it with: pilot daemon start" });
      const server = runExample("a2a-agent/agent.ts", null, { env: { PILOT_HOME: home } });
      expect(await server.exitCode()).toBe(1);
      expect(server.stderr).toMatch(/^error: .*\nhint: .*pilot daemon start/m);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("the agent process", () => {
  test("logs each request with the caller's Pilot address and the JSON-RPC method, and stops cleanly on SIGTERM", async () => {
    const client = c.daemon("client").address.replace(/\./g, "\\.");
    expect(agent.stdout).toMatch(new RegExp(`a2a-agent: POST /a2a SendMessage from ${client}:\\d+ -> 200 `));
    expect(agent.stdout).toMatch(new RegExp(`a2a-agent: POST /a2a message/stream from ${client}:\\d+ -> 200 `));
    expect(agent.stdout).toMatch(/a2a-agent: task \S+ \(sentiment-analysis\) -> completed: Sentiment: 73% positive/);
    expect(agent.stdout).toMatch(/a2a-agent: task \S+ \(sentiment-analysis\) -> canceled/);
    expect(agent.stdout).not.toMatch(new RegExp(`from ${c.daemon("stranger").address.replace(/\./g, "\\.")}`));
    expect(await agent.stop("SIGTERM")).toBe(0);
    expect(agent.stdout).toContain("a2a-agent: SIGTERM received, shutting down");
  });
});
