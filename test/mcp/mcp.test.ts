/**
 * `pilot mcp` driven by the official MCP client (`Client` +
 * `StdioClientTransport` of @modelcontextprotocol/sdk) against real daemons:
 * "a" runs the MCP server; "b" (tag nlp) serves an A2A card and an echo API
 * on Pilot port 80 through the driver's serveHttp, receives messages, files
 * and tasks; "c" asks "a" for trust. Runs the CLI from source, or
 * PILOT_BIN (dist/pilot).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { connect, type Driver, type PilotHttpServer } from "../../src/driver/index.ts";
import { pilotCommand, ROOT, runCommand, startCluster, type Cluster } from "../support/cluster.ts";

const TOOL_NAMES = ["show_self", "list_peers", "find_agents", "request_trust", "list_trust_requests", "approve_trust", "send_message", "list_inbox", "read_message", "send_file", "submit_task", "task_status", "http_request"];

let c: Cluster;
let b: Driver;
let server: PilotHttpServer;
let secureServer: PilotHttpServer;
const clients: Client[] = [];
const stderrs = new Map<Client, string>();

async function mcpClient(home: string): Promise<Client> {
  const [command, ...args] = pilotCommand();
  const transport = new StdioClientTransport({ command: command!, args: [...args, "mcp"], cwd: ROOT, env: { ...(process.env as Record<string, string>), PILOT_HOME: home }, stderr: "pipe" });
  const client = new Client({ name: "pilot-test", version: "1.0.0" });
  stderrs.set(client, "");
  transport.stderr?.on("data", (d) => stderrs.set(client, stderrs.get(client) + String(d)));
  await client.connect(transport);
  clients.push(client);
  return client;
}

async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

/** The structured result of a call that must succeed. */
async function ok(client: Client, name: string, args: Record<string, unknown> = {}): Promise<any> {
  const r = await call(client, name, args);
  const text = (r.content[0] as { text: string }).text;
  if (r.isError) throw new Error(`${name} failed: ${text}`);
  expect(JSON.parse(text)).toEqual(r.structuredContent as any);
  return r.structuredContent;
}

/** The CLI-style error envelope of a call that must fail. */
async function fails(client: Client, name: string, args: Record<string, unknown> = {}): Promise<{ status: string; code: string; message: string; hint?: string }> {
  const r = await call(client, name, args);
  expect(r.isError).toBe(true);
  expect(r.structuredContent).toBeUndefined();
  return JSON.parse((r.content[0] as { text: string }).text);
}

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

const CARD = {
  name: "Echo Agent",
  description: "echoes what it is sent",
  version: "1.0.0",
  url: "http://agent-b/a2a",
  protocolVersion: "0.3.0",
  capabilities: { streaming: false },
  skills: [{ id: "echo", name: "Echo", description: "returns the input", tags: ["nlp"] }],
};

let a: Client;

beforeAll(async () => {
  c = await startCluster({
    daemons: [
      { name: "a", hostname: "agent-a" },
      { name: "b", hostname: "agent-b", tags: ["nlp"] },
      { name: "c", hostname: "agent-c" },
    ],
  });
  b = await connect({ home: c.daemon("b").home });
  server = await b.serveHttp(80, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      if (req.url === "/.well-known/agent-card.json") return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(CARD));
      if (req.url === "/hang") return; // never answers
      if (req.url === "/big") return res.writeHead(200, { "content-type": "application/octet-stream" }).end(Buffer.alloc(1024 * 1024 + 4096, 7));
      res.writeHead(200, { "content-type": "application/json", "x-served-by": "agent-b" });
      res.end(JSON.stringify({ method: req.method, url: req.url, test: req.headers["x-test"] ?? null, body: Buffer.concat(chunks).toString() }));
    });
  });
  secureServer = await b.serveHttp(443, (req, res) => res.writeHead(200, { "content-type": "text/plain" }).end(`secret for ${req.headers["x-pilot-remote"] ?? "you"}`), { secure: true });
  a = await mcpClient(c.daemon("a").home);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close().catch(() => {})));
  await server?.close();
  await secureServer?.close();
  await b?.close();
  await c?.stop();
});

describe("pilot mcp", () => {
  test("lists every tool with input and output JSON schemas", async () => {
    const { tools } = await a.listTools();
    expect(tools.map((t) => t.name)).toEqual(TOOL_NAMES);
    for (const t of tools) {
      expect({ name: t.name, description: (t.description ?? "").length > 20 }).toEqual({ name: t.name, description: true });
      expect(t.inputSchema.type).toBe("object");
      expect(t.outputSchema?.type).toBe("object");
    }
    const http = tools.find((t) => t.name === "http_request")!;
    expect(http.inputSchema.required).toEqual(["target"]);
    expect(Object.keys(http.inputSchema.properties ?? {})).toEqual(["target", "port", "method", "path", "headers", "body", "secure", "timeout_ms"]);
    expect(tools.find((t) => t.name === "show_self")!.annotations?.readOnlyHint).toBe(true);
    expect(tools.find((t) => t.name === "approve_trust")!.description).toContain("mcp_allow_trust_approval=true");
    expect(stderrs.get(a)).toContain("pilot mcp: serving 13 tools");
  });

  test("show_self: this node", async () => {
    const self = await ok(a, "show_self");
    expect(self).toMatchObject({ address: c.daemon("a").address, node_id: c.daemon("a").nodeId, hostname: "agent-a", public: false, tags: [], registry_connected: true });
  });

  test("request_trust, then the other side approves: list_peers shows it", async () => {
    const r = await ok(a, "request_trust", { target: c.daemon("b").address, reason: "mcp test" });
    expect(r).toEqual({ node_id: c.daemon("b").nodeId, address: c.daemon("b").address, status: "pending" });
    const outgoing = await ok(a, "list_trust_requests");
    expect(outgoing.outgoing.map((o: any) => o.address)).toContain(c.daemon("b").address);
    await until("b to see a's request", async () => (await c.pilot("b", ["pending"])).json?.data?.pending?.some((p: any) => p.node_id === c.daemon("a").nodeId));
    expect((await c.pilot("b", ["approve", String(c.daemon("a").nodeId)])).code).toBe(0);
    const peers = await until("a to trust b", async () => {
      const p = await ok(a, "list_peers");
      return p.peers.some((x: any) => x.address === c.daemon("b").address) && p;
    });
    const peer = peers.peers.find((x: any) => x.address === c.daemon("b").address);
    expect(peer).toMatchObject({ node_id: c.daemon("b").nodeId, hostname: "agent-b" });
    expect(["direct", "punched", "relay", "none"]).toContain(peer.path);
    expect(peer.trusted_since).toMatch(/^\d{4}-/);
  });

  test("approve_trust is refused until the user allows it in the config", async () => {
    expect((await c.pilot("c", ["handshake", String(c.daemon("a").nodeId), "hello from c"])).code).toBe(0);
    const pending = await until("a to see c's request", async () => {
      const r = await ok(a, "list_trust_requests");
      return r.pending.some((p: any) => p.node_id === c.daemon("c").nodeId) && r;
    });
    expect(pending.approval_allowed).toBe(false);
    expect(pending.pending.find((p: any) => p.node_id === c.daemon("c").nodeId)).toMatchObject({ address: c.daemon("c").address, reason: "hello from c" });

    const refused = await fails(a, "approve_trust", { target: String(c.daemon("c").nodeId) });
    expect(refused).toMatchObject({ status: "error", code: "unauthorized" });
    expect(refused.hint).toContain("pilot config --set mcp_allow_trust_approval=true");
    expect((await c.pilot("a", ["pending"])).json.data.pending.map((p: any) => p.node_id)).toContain(c.daemon("c").nodeId); // still pending

    expect((await c.pilot("a", ["config", "--set", "mcp_allow_trust_approval=true"])).code).toBe(0);
    expect((await ok(a, "list_trust_requests")).approval_allowed).toBe(true); // no restart needed
    expect(await ok(a, "approve_trust", { target: String(c.daemon("c").nodeId) })).toEqual({ node_id: c.daemon("c").nodeId, address: c.daemon("c").address, status: "trusted" });
    await until("c to trust a", async () => (await c.pilot("c", ["trust"])).json?.data?.trusted?.some((t: any) => t.node_id === c.daemon("a").nodeId));
  });

  test("send_message reaches b's inbox; list_inbox and read_message read b's answer", async () => {
    const sent = await ok(a, "send_message", { target: c.daemon("b").address, text: "hello from the agent" });
    expect(sent).toMatchObject({ target: c.daemon("b").address, type: "text", stored: true, state: "delivered", error: null });
    const inbox = (await c.pilot("b", ["inbox"])).json.data;
    expect(inbox.messages.find((m: any) => m.id === sent.id)).toMatchObject({ from: c.daemon("a").address, preview: "hello from the agent" });

    expect((await fails(a, "send_message", { target: "agent-b", text: "{not json", type: "json" })).code).toBe("invalid_argument");

    const reply = await c.pilot("b", ["send-message", String(c.daemon("a").nodeId), "--data", "hi agent", "--reply-to", sent.id]);
    expect(reply.code).toBe(0);
    const listed = await until("a's inbox to have b's reply", async () => {
      const r = await ok(a, "list_inbox", { from: c.daemon("b").address, unread: true });
      return r.messages.length > 0 && r;
    });
    const entry = listed.messages[0];
    expect(entry).toMatchObject({ from: c.daemon("b").address, type: "text", read: false, reply_to: sent.id });
    const read = await ok(a, "read_message", { id: entry.id });
    expect(read).toMatchObject({ text: "hi agent", base64: null, truncated: false });
    expect(read.message.id).toBe(entry.id);
    expect((await ok(a, "list_inbox", { unread: true })).messages.find((m: any) => m.id === entry.id)).toBeUndefined();
  });

  test("send_file: b receives the file, verified", async () => {
    const path = join(mkdtempSync(join(c.dir, "files-")), "report.txt");
    const content = "quarterly numbers\n".repeat(1000);
    writeFileSync(path, content);
    const r = await ok(a, "send_file", { target: c.daemon("b").address, path });
    expect(r).toMatchObject({ target: c.daemon("b").address, bytes: content.length, sha256: createHash("sha256").update(content).digest("hex") });
    const received = (await c.pilot("b", ["received"])).json.data;
    expect(JSON.stringify(received)).toContain(r.name);
    expect((await fails(a, "send_file", { target: "agent-b", path: "relative/report.txt" })).code).toBe("invalid_argument");
  });

  test("http_request to b's Pilot port 80 (served with the driver's serveHttp)", async () => {
    const r = await ok(a, "http_request", { target: c.daemon("b").address, method: "POST", path: "/echo?x=1", headers: { "x-test": "yes" }, body: "ping" });
    expect(r).toMatchObject({ status: 200, body_encoding: "utf8", truncated: false });
    expect(r.headers["x-served-by"]).toBe("agent-b");
    expect(JSON.parse(r.body)).toEqual({ method: "POST", url: "/echo?x=1", test: "yes", body: "ping" });

    const big = await ok(a, "http_request", { target: String(c.daemon("b").nodeId), path: "/big" });
    expect(big).toMatchObject({ status: 200, body_encoding: "base64", truncated: true, bytes: 1024 * 1024 });

    const secure = await ok(a, "http_request", { target: "agent-b", secure: true, path: "/vault" });
    expect(secure).toMatchObject({ status: 200, body_encoding: "utf8", url: "https://agent-b:443/vault" });
    expect(secure.body).toStartWith("secret for ");

    const slow = await fails(a, "http_request", { target: "agent-b", path: "/hang", timeout_ms: 500 });
    expect(slow).toMatchObject({ code: "timeout", message: "no complete answer from http://agent-b:80/hang within 500 ms" });

    const refused = await fails(a, "http_request", { target: c.daemon("b").address, port: 81, timeout_ms: 5000 });
    expect(refused.code).toBe("connection_refused");
    expect((await fails(a, "http_request", { target: "agent-b", path: "no-slash" })).message).toMatch(/path/i);
  });

  test("find_agents: nodes tagged nlp with their A2A card and polo score", async () => {
    const r = await ok(a, "find_agents", { tag: "#NLP" });
    expect(r.tag).toBe("nlp");
    const agent = r.agents.find((x: any) => x.address === c.daemon("b").address);
    expect(agent).toMatchObject({ hostname: "agent-b", tags: ["nlp"], card_url: "http://agent-b/.well-known/agent-card.json", card_error: null });
    expect(agent.card).toMatchObject({ name: "Echo Agent", description: "echoes what it is sent", url: "http://agent-b/a2a", skills: [{ id: "echo", name: "Echo", description: "returns the input", tags: ["nlp"] }] });
    expect(agent.polo_score === null || typeof agent.polo_score === "number").toBe(true);
    expect((await fails(a, "find_agents", { tag: "not a tag" })).code).toBe("invalid_argument");
  });

  test("submit_task and task_status follow a task to its result", async () => {
    const t = await ok(a, "submit_task", { target: c.daemon("b").address, task: "say hello", input: "world" });
    expect(t).toMatchObject({ role: "submitted", peer: c.daemon("b").address, description: "say hello", target: c.daemon("b").address });
    expect(t.id).toMatch(/^[0-9a-f]{32}$/);
    await until("b to have the task", async () => (await c.pilot("b", ["task", "list", "--received"])).json?.data?.tasks?.some((x: any) => x.id === t.id));
    expect((await c.pilot("b", ["task", "accept", t.id])).code).toBe(0);
    expect((await c.pilot("b", ["task", "result", t.id, "--text", "hello world"])).code).toBe(0);
    const done = await until("the result to reach a", async () => {
      const s = await ok(a, "task_status", { id: t.id });
      return s.state === "succeeded" && s;
    });
    expect(done.result).toMatchObject({ text: "hello world" });
    expect((await fails(a, "task_status", { id: "ffffffffffff" })).code).toBe("not_found");
  });

  test("invalid arguments are tool errors, not protocol failures", async () => {
    const r = await fails(a, "request_trust", { target: "" });
    expect(r).toMatchObject({ status: "error", code: "invalid_argument" });
    expect(r.message).toMatch(/^Input validation error/);
    expect(r.hint).toContain("input schema");
    expect((await fails(a, "no_such_tool")).code).toBe("invalid_argument");
  });

  test("without a daemon the server still starts and calls say not_running with the hint; it connects once one runs, and again after a restart", async () => {
    const lonely = await mcpClient(join(c.dir, "late")); // the home startDaemon({ name: "late" }) uses
    expect((await lonely.listTools()).tools.length).toBe(TOOL_NAMES.length);
    expect(await fails(lonely, "show_self")).toEqual({ status: "error", code: "not_running", message: "the Pilot daemon is not running", hint: "start it with: pilot daemon start" });
    expect((await fails(lonely, "list_inbox")).code).toBe("not_running");

    const late = await c.startDaemon({ name: "late", hostname: "agent-late" });
    expect((await ok(lonely, "show_self")).address).toBe(late.address);
    await c.stopDaemon("late");
    expect((await fails(lonely, "show_self")).code).toBe("not_running");
    await c.startDaemon({ name: "late", hostname: "agent-late" });
    expect((await ok(lonely, "show_self")).hostname).toBe("agent-late");
  }, 30_000);

  test("stdout carries only JSON-RPC; requests written before stdin closes are all answered, then it exits 0", async () => {
    const requests = [
      { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } },
      { jsonrpc: "2.0", method: "notifications/initialized" },
      { jsonrpc: "2.0", id: 2, method: "tools/list" },
      { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "show_self", arguments: {} } },
      { jsonrpc: "2.0", id: 4, method: "tools/call", params: { name: "http_request", arguments: { target: 5 } } },
      { jsonrpc: "2.0", id: 5, method: "tools/call", params: { name: "http_request", arguments: { target: "agent-b", path: "/hang", timeout_ms: 1000 } } }, // answers after stdin closed
    ];
    const r = await runCommand([...pilotCommand(), "mcp"], { env: { ...process.env, PILOT_HOME: c.daemon("a").home }, input: requests.map((m) => JSON.stringify(m) + "\n").join(""), timeoutMs: 20_000 });
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n").filter((l) => l !== "");
    const answers = lines.map((l) => JSON.parse(l));
    expect(answers.every((m) => m.jsonrpc === "2.0")).toBe(true);
    expect(answers.map((m) => m.id).sort()).toEqual([1, 2, 3, 4, 5]);
    const byId = new Map(answers.map((m) => [m.id, m]));
    expect(byId.get(2).result.tools).toHaveLength(TOOL_NAMES.length);
    expect(byId.get(3).result.structuredContent.address).toBe(c.daemon("a").address);
    expect(JSON.parse(byId.get(4).result.content[0].text).code).toBe("invalid_argument");
    expect(JSON.parse(byId.get(5).result.content[0].text).code).toBe("timeout");
    expect(r.stderr).toContain("pilot mcp: serving");
  });
});
