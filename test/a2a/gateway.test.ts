/**
 * The tutorial's point: a standard A2A client, unchanged, reaches an agent
 * on Pilot through the gateway. The agent (examples/a2a-agent) runs as
 * daemon "agent"'s user; daemon "client" runs `pilot gateway start
 * --foreground --subnet 127.x.0.0/16` (a loopback subnet: no alias, no
 * root) mapping data-analyst to a local IP; then the official SDK client,
 * with no custom fetch at all, curl, and examples/a2a-agent/client.ts with a
 * URL talk to http://127.x.0.1/; `pilot a2a discover --tag nlp` shows the
 * agent's local IP and, with --map, maps it. Port 80 when run as root (as in CI);
 * otherwise the agent and the gateway use port 8080, since binding TCP port
 * 80 needs root.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TaskState, type Task } from "@a2a-js/sdk";
import { ClientFactory } from "@a2a-js/sdk/client";
import { userMessage } from "../../examples/a2a-agent/client.ts";
import { SENTIMENT_REPORT } from "../../examples/a2a-agent/skills.ts";
import { pilotCommand, startCluster, type Cluster } from "../support/cluster.ts";
import { runExample, spawnIn, stopAll, type Spawned } from "../examples/support.ts";

const PORT = process.getuid?.() === 0 ? 80 : 8080;
// A /16 of its own inside 127/8, so that no other test's gateway is in the way.
const SECOND = 100 + Math.floor(Math.random() * 100);
const SUBNET = `127.${SECOND}.0.0/16`;
const STEP_MS = 100;

let c: Cluster;
let gateway: Spawned;
let base: string; // http://127.x.0.1[:8080]

beforeAll(async () => {
  c = await startCluster({
    daemons: [
      { name: "agent", hostname: "data-analyst", tags: ["nlp", "analysis"] },
      { name: "client", hostname: "orchestrator" },
    ],
  });
  await c.trust("agent", "client");
  const agent = runExample("a2a-agent/agent.ts", c.daemon("agent"), { env: { PORT: String(PORT), STEP_MS: String(STEP_MS) } });
  await agent.waitFor(new RegExp(`listening on pilot port ${PORT} `));
  gateway = spawnIn([...pilotCommand(), "gateway", "start", "--foreground", "--subnet", SUBNET, "--ports", String(PORT), "data-analyst"], c.daemon("client").env);
  const active = await gateway.waitFor(/Gateway active: \S+ -> (127\.\d+\.\d+\.\d+):/);
  base = `http://${active[1]}${PORT === 80 ? "" : `:${PORT}`}`;
});

afterAll(async () => {
  await stopAll(); // the gateway (SIGTERM) and the agent
  await c?.stop();
});

describe("A2A through the gateway, no Pilot code in the client", () => {
  test("the mapping is the first IP of the subnet, for data-analyst's address", async () => {
    expect(base).toStartWith(`http://127.${SECOND}.0.1`);
    const list = await c.pilot("client", ["gateway", "list"]);
    expect(list.code).toBe(0);
    expect(list.json.data.mappings).toEqual([expect.objectContaining({ local_ip: `127.${SECOND}.0.1`, pilot_addr: c.daemon("agent").address, ports: [PORT] })]);
  });

  test("curl gets the Agent Card, which names the gateway's IP, not the agent's machine", async () => {
    const proc = Bun.spawn(["curl", "-sS", "--max-time", "10", "-H", "A2A-Version: 1.0", `${base}/.well-known/agent-card.json`], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect({ code, err }).toEqual({ code: 0, err: "" });
    const card = JSON.parse(out);
    expect(card.name).toBe("data-analyst");
    expect(card.supportedInterfaces[0].url).toBe(`${base}/a2a`);
    // The pre-0.3 path, 0.3-shaped, as the tutorial's curl and Python client fetch it.
    const legacy = (await (await fetch(`${base}/.well-known/agent.json`)).json()) as any;
    expect(legacy).toMatchObject({ name: "data-analyst", url: `${base}/a2a`, protocolVersion: "0.3" });
  });

  test("the official SDK client, unchanged (new ClientFactory(), global fetch): card, send, get, stream", async () => {
    const client = await new ClientFactory().createFromUrl(base);
    expect([client.transport.protocolName, client.transport.protocolVersion]).toEqual(["JSONRPC", "1.0"]);

    const sent = (await client.sendMessage(
      { tenant: "", message: userMessage("Analyze the sentiment of these customer reviews"), configuration: undefined, metadata: undefined },
      { signal: AbortSignal.timeout(15_000) },
    )) as Task;
    expect(sent.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const report = sent.artifacts[0]?.parts[0]?.content;
    expect(report).toEqual({ $case: "text", value: SENTIMENT_REPORT });

    const got = await client.getTask({ id: sent.id, tenant: "", historyLength: undefined });
    expect(got.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);

    const started = performance.now();
    const seen: { at: number; kind: string }[] = [];
    for await (const ev of client.sendMessageStream({ tenant: "", message: userMessage("Analyze these too"), configuration: undefined, metadata: undefined })) {
      const p = ev.payload;
      const state = p?.$case === "task" || p?.$case === "statusUpdate" ? ` ${TaskState[p.value.status!.state]}` : "";
      seen.push({ at: performance.now() - started, kind: `${p?.$case}${state}` });
    }
    expect(seen.map((s) => s.kind)).toEqual([
      "task TASK_STATE_SUBMITTED",
      "statusUpdate TASK_STATE_WORKING",
      "statusUpdate TASK_STATE_WORKING",
      "statusUpdate TASK_STATE_WORKING",
      "artifactUpdate",
      "statusUpdate TASK_STATE_COMPLETED",
    ]);
    // Streamed through the gateway as the agent sent it, not buffered until the end.
    expect(seen.at(-1)!.at - seen[0]!.at).toBeGreaterThan(2 * STEP_MS);
  });

  test("examples/a2a-agent/client.ts with the gateway's URL needs no daemon at all", async () => {
    const run = runExample("a2a-agent/client.ts", null, { args: [base], env: { PILOT_HOME: "/nonexistent-pilot-home" } });
    const code = await run.exitCode();
    if (code !== 0) throw new Error(`client.ts ${base} exited ${code}:\n${run.output}`);
    expect(run.stdout).toContain(`card:   data-analyst 1.0.0 at ${base}/a2a (JSONRPC 1.0)`);
    expect(run.stdout).toContain(`report: ${SENTIMENT_REPORT}`);
    expect(run.stdout).toContain("all A2A calls succeeded");
  });
});

describe("pilot a2a discover with a gateway running", () => {
  test("shows each agent's local IP; --map maps the agents that have none, as the tutorial's discovery script does", async () => {
    const ip = `127.${SECOND}.0.1`;
    const portArgs = ["--port", String(PORT)];
    let r = await c.pilot("client", ["a2a", "discover", "--tag", "nlp", ...portArgs]);
    expect(r.code).toBe(0);
    expect(r.json.data.gateway).toBe(true);
    expect(r.json.data.agents).toEqual([expect.objectContaining({ hostname: "data-analyst", local_ip: ip, local_url: base })]);

    const unmapped = await c.pilot("client", ["gateway", "unmap", "data-analyst"]);
    expect(unmapped.code).toBe(0);
    r = await c.pilot("client", ["a2a", "discover", "--tag", "nlp", ...portArgs]);
    expect(r.json.data.agents).toEqual([expect.objectContaining({ hostname: "data-analyst", local_ip: null, local_url: null })]);

    const t = await c.pilot("client", ["a2a", "discover", "--tag", "nlp", ...portArgs, "--map"], { json: false });
    expect(t.code).toBe(0);
    const line = t.stdout.match(/^ {2}gateway: (http:\/\/127\.\d+\.\d+\.\d+(?::\d+)?) {2}\(any HTTP or A2A client/m);
    expect(line).not.toBeNull();
    const list = await c.pilot("client", ["gateway", "list"]);
    const mapping = list.json.data.mappings.find((m: any) => m.pilot_addr === c.daemon("agent").address);
    expect(mapping.ports).toEqual([PORT]);
    expect(line![1]).toBe(`http://${mapping.local_ip}${PORT === 80 ? "" : `:${PORT}`}`);

    // The URL it printed is all an unchanged A2A client needs.
    const client = await new ClientFactory().createFromUrl(line![1]!);
    const sent = (await client.sendMessage({ tenant: "", message: userMessage("Summarize 1 2 3"), configuration: undefined, metadata: undefined })) as Task;
    expect(sent.artifacts[0]?.parts[0]?.content).toEqual({ $case: "text", value: "Summary: count 3, min 1, max 3, mean 2, sum 6" });
  });
});
