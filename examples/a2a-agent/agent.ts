/**
 * The tutorial's A2A agent, "data-analyst", on Pilot port 80.
 *
 *   PILOT_HOME=/tmp/agent-a bun examples/a2a-agent/agent.ts
 *
 *   GET  /.well-known/agent-card.json   the Agent Card (A2A 1.0; a 0.3-shaped card without an A2A-Version header)
 *   GET  /.well-known/agent.json        the same card at the pre-0.3 path
 *   POST /a2a                           JSON-RPC: SendMessage, SendStreamingMessage (SSE), GetTask, CancelTask, ...
 *                                       and, without `A2A-Version: 1.0`, the 0.3 names: message/send, message/stream, tasks/get, ...
 *
 * Everything A2A is the official @a2a-js/sdk server (DefaultRequestHandler,
 * its express handlers, v0.3 compatibility on); Pilot's part is one line,
 * `pilot.serveHttp(80, app)`. The card advertises the URL the caller used
 * (its Host header): `http://data-analyst/a2a` over Pilot, or
 * `http://10.4.0.1/a2a` through a gateway, never an address of this machine.
 *
 * Only agents that trust this one (or everyone, if it is public) reach it.
 * STEP_MS (default 150) is the pause between the progress updates of a task;
 * PORT (default 80) the Pilot port.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import type http from "node:http";
import express from "express";
import { Role, TaskState, type AgentCard, type Message, type Part } from "@a2a-js/sdk";
import { duplicateInterfacesForLegacy } from "@a2a-js/sdk/compat/v0_3";
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore, type AgentExecutor, type ExecutionEventBus } from "@a2a-js/sdk/server";
import { UserBuilder, agentCardHandler, jsonRpcHandler } from "@a2a-js/sdk/server/express";
import { connectToDaemon, stopOnSignal, urlHost } from "../common.ts";
import { pickSkill, SKILLS } from "./skills.ts";

export const PORT = 80;
/** Where JSON-RPC requests go, as in the tutorial. */
export const RPC_PATH = "/a2a";

/** The Agent Card for a caller that reaches this agent at `base` (e.g. `http://10.4.0.1`). */
export function agentCard(base: string): AgentCard {
  const url = `${base}${RPC_PATH}`;
  return {
    name: "data-analyst",
    description: "Analyzes datasets and produces structured reports",
    version: "1.0.0",
    // A 1.0 JSON-RPC interface, and the same URL again as 0.3 so that 0.3 clients are let in.
    supportedInterfaces: duplicateInterfacesForLegacy([{ url, protocolBinding: "JSONRPC", protocolVersion: "1.0", tenant: "" }], ["JSONRPC"]),
    provider: undefined,
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills: SKILLS.map((s) => s.card),
    signatures: [],
  };
}

const HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  const first = (Array.isArray(value) ? value[0] : value)?.split(",")[0]?.trim();
  return first === "" ? undefined : first;
}

/**
 * The base URL the caller used: `X-Forwarded-Proto`/`X-Forwarded-Host` when a
 * proxy set them, else `http://` + the Host header. `fallback` (this agent's
 * Pilot name) when there is no usable Host header.
 */
export function callerBase(req: http.IncomingMessage, fallback: string): string {
  const host = header(req, "x-forwarded-host") ?? header(req, "host");
  const scheme = header(req, "x-forwarded-proto")?.toLowerCase() === "https" ? "https" : "http";
  return host !== undefined && HOST.test(host) ? `${scheme}://${host}` : `http://${fallback}`;
}

function textPart(text: string): Part {
  return { content: { $case: "text", value: text }, mediaType: "text/plain", filename: "", metadata: undefined };
}

function agentMessage(text: string, taskId: string, contextId: string): Message {
  return { messageId: randomUUID(), role: Role.ROLE_AGENT, parts: [textPart(text)], contextId, taskId, metadata: undefined, extensions: [], referenceTaskIds: [] };
}

function textOf(message: Message): string {
  return message.parts
    .map((p) => (p.content?.$case === "text" ? p.content.value : ""))
    .filter((t) => t !== "")
    .join("\n");
}

/**
 * The agent's work as A2A events: the task (submitted), one WORKING update
 * per step of the skill, the report as an artifact, then COMPLETED. A
 * CancelTask between steps ends it CANCELED instead.
 */
export function dataAnalystExecutor(options: { stepMs: number; log: (line: string) => void }): AgentExecutor {
  const canceled = new Set<string>();
  return {
    async execute(ctx, bus: ExecutionEventBus) {
      const { taskId, contextId } = ctx;
      const message = ctx.userMessage;
      const text = textOf(message);
      const skill = pickSkill(text, message.metadata);
      const status = (state: TaskState, note?: string) => ({ state, message: note === undefined ? undefined : agentMessage(note, taskId, contextId), timestamp: new Date().toISOString() });
      const update = (state: TaskState, note?: string) => AgentEvent.statusUpdate({ taskId, contextId, status: status(state, note), metadata: undefined });

      bus.publish(
        AgentEvent.task({
          id: taskId,
          contextId,
          status: status(TaskState.TASK_STATE_SUBMITTED),
          artifacts: [],
          history: [...(ctx.task?.history ?? []), message],
          metadata: { skill: skill.card.id },
        }),
      );
      for (const step of skill.steps) {
        await Bun.sleep(options.stepMs);
        if (canceled.delete(taskId)) {
          bus.publish(update(TaskState.TASK_STATE_CANCELED, "Canceled"));
          options.log(`a2a-agent: task ${taskId} (${skill.card.id}) -> canceled`);
          return;
        }
        bus.publish(update(TaskState.TASK_STATE_WORKING, step));
      }
      const report = skill.run(text);
      bus.publish(
        AgentEvent.artifactUpdate({
          taskId,
          contextId,
          artifact: { artifactId: randomUUID(), name: "report", description: `${skill.card.name} report`, parts: [textPart(report)], metadata: undefined, extensions: [] },
          append: false,
          lastChunk: true,
          metadata: undefined,
        }),
      );
      bus.publish(update(TaskState.TASK_STATE_COMPLETED, "Analysis complete"));
      options.log(`a2a-agent: task ${taskId} (${skill.card.id}) -> completed: ${report}`);
    },
    async cancelTask(taskId) {
      // execute() sees it before its next step and publishes CANCELED.
      canceled.add(taskId);
    },
  };
}

export interface AgentAppOptions {
  /** How this agent is named when a request carries no Host header (its Pilot hostname or address). */
  selfHost: string;
  /** Pause between progress updates, in ms. */
  stepMs?: number;
  /** Where request and task logs go. Default: console.log. */
  log?: (line: string) => void;
}

/** The express app: Agent Card at both well-known paths, JSON-RPC at /a2a. */
export function createAgentApp(options: AgentAppOptions): express.Express {
  const log = options.log ?? ((line: string) => console.log(line));
  const fallback = urlHost(options.selfHost);
  // The SDK asks its card provider for the card without the request: the base URL travels alongside.
  const requestBase = new AsyncLocalStorage<string>();
  const requestHandler = new DefaultRequestHandler(
    agentCard(`http://${fallback}`),
    new InMemoryTaskStore(),
    dataAnalystExecutor({ stepMs: options.stepMs ?? 150, log }),
  );
  const cards = agentCardHandler({
    agentCardProvider: async () => agentCard(requestBase.getStore() ?? `http://${fallback}`),
    cache: { maxAge: 0 }, // the card depends on the Host header
    legacyCompat: { enabled: true },
  });

  const app = express();
  app.disable("x-powered-by");
  app.use((req, res, next) => {
    const started = performance.now();
    res.once("finish", () => {
      const method = typeof req.body?.method === "string" ? ` ${req.body.method}` : "";
      const from = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
      log(`a2a-agent: ${req.method} ${req.originalUrl}${method} from ${from} -> ${res.statusCode} (${(performance.now() - started).toFixed(1)} ms)`);
    });
    requestBase.run(callerBase(req, fallback), next);
  });
  app.use("/.well-known/agent-card.json", cards);
  app.use("/.well-known/agent.json", cards);
  app.use(RPC_PATH, jsonRpcHandler({ requestHandler, userBuilder: UserBuilder.noAuthentication, legacyCompat: { enabled: true } }));
  app.use((_req, res) => {
    res.status(404).json({ error: "not found", agent_card: "/.well-known/agent-card.json" });
  });
  return app;
}

if (import.meta.main) {
  const pilot = await connectToDaemon();
  const stepMs = Number(process.env.STEP_MS ?? 150);
  const port = Number(process.env.PORT ?? PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`error: PORT=${process.env.PORT} is not a port (1-65535)`);
    process.exit(2);
  }
  const app = createAgentApp({ selfHost: pilot.hostname ?? pilot.address, stepMs: Number.isFinite(stepMs) && stepMs >= 0 ? stepMs : 150 });
  const server = await pilot.serveHttp(port, app);
  const name = `${pilot.hostname ?? urlHost(pilot.address)}${port === 80 ? "" : `:${port}`}`;
  console.log(`A2A agent data-analyst listening on pilot port ${server.port} (${pilot.address})`);
  console.log(`  card: http://${name}/.well-known/agent-card.json  (also /.well-known/agent.json)`);
  console.log(`  rpc:  http://${name}${RPC_PATH}  (A2A 1.0 JSON-RPC; 0.3 without an A2A-Version header)`);
  stopOnSignal("a2a-agent", async () => {
    await server.close();
    await pilot.close();
  });
}
