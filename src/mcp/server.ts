/**
 * `pilot mcp`: the network as tools for an LLM agent, over the Model Context
 * Protocol on stdio (the official @modelcontextprotocol/sdk). Every tool is
 * a call on the local daemon through the driver SDK, so the agent acts as
 * this node: its address, its trust, its inbox. See docs/MCP.md.
 *
 * stdout carries the protocol and nothing else; anything else goes to stderr.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { readConfig } from "../cli/config.ts";
import { CliError } from "../cli/errors.ts";
import { DaemonLink } from "./daemon-link.ts";
import { errorResult } from "./errors.ts";
import { register, type PilotTool, type ToolContext } from "./tool.ts";
import { findAgents } from "./tools/agents.ts";
import { sendFile } from "./tools/files.ts";
import { httpRequest } from "./tools/http.ts";
import { listInbox, readMessage, sendMessage } from "./tools/messages.ts";
import { listPeers, showSelf } from "./tools/node.ts";
import { submitTask, taskStatus } from "./tools/tasks.ts";
import { approveTrust, listTrustRequests, requestTrust } from "./tools/trust.ts";

/** Every tool, in the order clients list them. */
export const TOOLS: readonly PilotTool<any, any>[] = [
  showSelf,
  listPeers,
  findAgents,
  requestTrust,
  listTrustRequests,
  approveTrust,
  sendMessage,
  listInbox,
  readMessage,
  sendFile,
  submitTask,
  taskStatus,
  httpRequest,
];

const INSTRUCTIONS = [
  "Pilot is an encrypted overlay network for AI agents; these tools act as this machine's Pilot node (its local daemon).",
  "Nodes are named by address (0:0000.0000.002A), node id or hostname. Private nodes talk only to nodes they trust, and trust is mutual: request_trust, then the other side approves.",
  "Failed calls return a JSON error with a stable code and a hint saying what to do next (e.g. not_running: the user must run 'pilot daemon start').",
].join(" ");

/** How long a shutdown waits for tool calls in progress to answer. */
const DRAIN_MS = 5000;

export function createMcpServer(link: DaemonLink, version: string, inflight = new Set<Promise<unknown>>()): McpServer {
  const server = new McpServer({ name: "pilot", title: "Pilot network", version }, { instructions: INSTRUCTIONS });
  const ctx: ToolContext = { daemon: () => link.get(), config: () => readConfig() };
  for (const tool of TOOLS) register(server, tool, ctx, inflight);
  envelopeSdkErrors(server);
  return server;
}

/**
 * What the SDK itself reports as a tool error (arguments that fail the input
 * schema, an unknown tool) gets the same envelope as ours: invalid_argument
 * with a hint. The SDK builds those results in its private `createToolError`
 * (pinned version; test/mcp checks the shape), so it is replaced here.
 */
function envelopeSdkErrors(server: McpServer): void {
  const target = server as unknown as { createToolError?: (message: string) => unknown };
  if (typeof target.createToolError !== "function") return;
  target.createToolError = (message: string) => {
    const internal = /output validation/i.test(message);
    return errorResult(
      internal
        ? new CliError("internal", message, "this is a bug in pilot mcp; please report it with the tool call")
        : new CliError("invalid_argument", message.replace(/^MCP error -?\d+: /, ""), "check the arguments against the tool's input schema (tools/list)"),
    );
  };
}

/** Serves MCP on stdin/stdout until stdin ends (the client went away) or a signal; resolves then. */
export async function runStdioServer(version: string): Promise<void> {
  // The protocol owns stdout: route console output a dependency might make to stderr.
  for (const method of ["log", "info", "debug", "warn"] as const) console[method] = console.error;
  const link = new DaemonLink();
  const inflight = new Set<Promise<unknown>>();
  const server = createMcpServer(link, version, inflight);
  const transport = new StdioServerTransport();
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let closing = false;
  const shutdown = async (drain: boolean) => {
    if (closing) return;
    closing = true;
    // stdin ended: the calls already asked still answer (a client may write its requests and close).
    if (drain && inflight.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.allSettled([...inflight]), new Promise((r) => (timer = setTimeout(r, DRAIN_MS)))]);
      clearTimeout(timer);
      await new Promise((r) => setImmediate(r)); // let the transport write the last answers
    }
    await server.close().catch(() => {});
    await link.close().catch(() => {});
    finish();
  };
  transport.onclose = () => void shutdown(false);
  process.stdin.once("end", () => void shutdown(true));
  process.stdin.once("close", () => void shutdown(true));
  const onSignal = () => void shutdown(false);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  await server.connect(transport);
  process.stderr.write(`pilot mcp: serving ${TOOLS.length} tools on stdio (MCP); the daemon of ${process.env.PILOT_SOCKET ?? process.env.PILOT_HOME ?? "~/.pilot"}\n`);
  await finished;
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
}
