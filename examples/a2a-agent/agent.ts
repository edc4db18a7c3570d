/**
 * The tutorial's A2A agent, "data-analyst", on Pilot port 80; or any other
 * agent named and skilled by options, environment or a skills file
 * (profile.ts), e.g. the tutorial's code-reviewer and report-writer:
 *
 *   PILOT_HOME=/tmp/agent-a bun examples/a2a-agent/agent.ts
 *   PILOT_HOME=/tmp/agent-c bun examples/a2a-agent/agent.ts --skills examples/a2a-agent/agents/code-reviewer.json
 *
 *   GET  /.well-known/agent-card.json   the Agent Card (A2A 1.0; a 0.3-shaped card without an A2A-Version header)
 *   GET  /.well-known/agent.json        the same card at the pre-0.3 path, plus `capabilities.skills` (the tutorial's shape)
 *   POST /a2a                           JSON-RPC: SendMessage, SendStreamingMessage (SSE), GetTask, CancelTask, ...
 *                                       and, without `A2A-Version: 1.0`, the 0.3 names: message/send, message/stream, tasks/get, ...
 *                                       and the tutorial's launch-era tasks/send and tasks/get (launch-era.ts)
 *
 * Everything A2A 1.0 and 0.3 is the official @a2a-js/sdk server
 * (DefaultRequestHandler, its express handlers, v0.3 compatibility on);
 * Pilot's part is one line, `pilot.serveHttp(80, app)`. The card advertises
 * the URL the caller used (its Host header): `http://data-analyst/a2a` over
 * Pilot, or `http://10.4.0.1/a2a` through a gateway, never an address of
 * this machine.
 *
 * Only agents that trust this one (or everyone, if it is public) reach it.
 * `--help` lists the options.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import type http from "node:http";
import express from "express";
import { Role, TaskState, type AgentCard, type Message, type Part } from "@a2a-js/sdk";
import { duplicateInterfacesForLegacy } from "@a2a-js/sdk/compat/v0_3";
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore, type AgentExecutor, type ExecutionEventBus } from "@a2a-js/sdk/server";
import { UserBuilder, agentCardHandler, jsonRpcHandler } from "@a2a-js/sdk/server/express";
import { NodeError } from "pilot/driver";
import { connectToDaemon, stopOnSignal, urlHost } from "../common.ts";
import { LaunchEraTaskStore, launchEraRpc, withCapabilitySkills } from "./launch-era.ts";
import { agentSettings, DEFAULT_PORT, DEFAULT_PROFILE, UsageError, USAGE, type AgentProfile } from "./profile.ts";
import { pickSkill, type Skill } from "./skills.ts";

export const PORT = DEFAULT_PORT;
/** Where JSON-RPC requests go, as in the tutorial. */
export const RPC_PATH = "/a2a";

/** The Agent Card of `profile` for a caller that reaches this agent at `base` (e.g. `http://10.4.0.1`). */
export function agentCard(base: string, profile: AgentProfile = DEFAULT_PROFILE): AgentCard {
  const url = `${base}${RPC_PATH}`;
  return {
    name: profile.name,
    description: profile.description,
    version: profile.version,
    // A 1.0 JSON-RPC interface, and the same URL again as 0.3 so that 0.3 clients are let in.
    supportedInterfaces: duplicateInterfacesForLegacy([{ url, protocolBinding: "JSONRPC", protocolVersion: "1.0", tenant: "" }], ["JSONRPC"]),
    provider: undefined,
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills: profile.skills.map((s) => s.card),
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
export function skillsExecutor(options: { skills: readonly Skill[]; stepMs: number; log: (line: string) => void }): AgentExecutor {
  const canceled = new Set<string>();
  return {
    async execute(ctx, bus: ExecutionEventBus) {
      const { taskId, contextId } = ctx;
      const message = ctx.userMessage;
      const text = textOf(message);
      const skill = pickSkill(text, message.metadata, options.skills);
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
      bus.publish(update(TaskState.TASK_STATE_COMPLETED, skill.done));
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
  /** Its name, description and skills. Default: the tutorial's data-analyst. */
  profile?: AgentProfile;
  /** Where launch-era tasks/send results are kept for tasks/get. Default: a new store with the default bounds. */
  launchEraTasks?: LaunchEraTaskStore;
  /** Pause between progress updates, in ms. */
  stepMs?: number;
  /** Where request and task logs go. Default: console.log. */
  log?: (line: string) => void;
}

/** The express app: Agent Card at both well-known paths, JSON-RPC at /a2a. */
export function createAgentApp(options: AgentAppOptions): express.Express {
  const log = options.log ?? ((line: string) => console.log(line));
  const profile = options.profile ?? DEFAULT_PROFILE;
  const fallback = urlHost(options.selfHost);
  // The SDK asks its card provider for the card without the request: the base URL travels alongside.
  const requestBase = new AsyncLocalStorage<string>();
  const requestHandler = new DefaultRequestHandler(
    agentCard(`http://${fallback}`, profile),
    new InMemoryTaskStore(),
    skillsExecutor({ skills: profile.skills, stepMs: options.stepMs ?? 150, log }),
  );
  const cards = agentCardHandler({
    agentCardProvider: async () => agentCard(requestBase.getStore() ?? `http://${fallback}`, profile),
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
  app.use("/.well-known/agent.json", withCapabilitySkills(), cards);
  // POST only, a bounded body, and the tutorial's tasks/send and tasks/get; the rest goes on to the SDK.
  app.use(RPC_PATH, launchEraRpc({ skills: profile.skills, store: options.launchEraTasks ?? new LaunchEraTaskStore(), log }));
  app.use(RPC_PATH, jsonRpcHandler({ requestHandler, userBuilder: UserBuilder.noAuthentication, legacyCompat: { enabled: true } }));
  app.use((_req, res) => {
    res.status(404).json({ error: "not found", agent_card: "/.well-known/agent-card.json" });
  });
  // Anything that escaped the handlers: a JSON line and a log entry, never express's HTML page with a stack trace.
  app.use(((error, req, res, _next) => {
    const status = typeof error?.status === "number" && error.status >= 400 && error.status < 600 ? error.status : 500;
    log(`a2a-agent: ${req.method} ${req.originalUrl} failed: ${error instanceof Error ? error.message : String(error)}`);
    if (res.headersSent) res.destroy();
    else res.status(status).json({ error: status === 500 ? "internal error" : String(error?.message ?? "bad request") });
  }) as express.ErrorRequestHandler);
  return app;
}

if (import.meta.main) {
  let settings: ReturnType<typeof agentSettings>;
  try {
    settings = agentSettings(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`error: ${error.message} (see --help)`);
    process.exit(2);
  }
  if (settings === "help") {
    console.log(USAGE);
    process.exit(0);
  }
  const { profile, port, stepMs } = settings;
  const pilot = await connectToDaemon();
  const app = createAgentApp({ selfHost: pilot.hostname ?? pilot.address, profile, stepMs });
  let server: Awaited<ReturnType<typeof pilot.serveHttp>>;
  try {
    server = await pilot.serveHttp(port, app);
  } catch (error) {
    if (!(error instanceof NodeError)) throw error;
    // One line: what went wrong and what to do (e.g. port_in_use: another program serves that Pilot port).
    const where = error.code === "port_in_use" ? " (this agent: --port N or PORT=N)" : "";
    console.error(`error: ${error.message}${error.hint ? `; hint: ${error.hint}` : ""}${where}`);
    await pilot.close();
    process.exit(1);
  }
  const name = `${pilot.hostname ?? urlHost(pilot.address)}${port === 80 ? "" : `:${port}`}`;
  console.log(`A2A agent ${profile.name} listening on pilot port ${server.port} (${pilot.address})`);
  console.log(`  skills: ${profile.skills.map((s) => `${s.card.name} (${s.card.id})`).join(", ")}`);
  console.log(`  card: http://${name}/.well-known/agent-card.json  (also /.well-known/agent.json)`);
  console.log(`  rpc:  http://${name}${RPC_PATH}  (A2A 1.0 JSON-RPC; 0.3 without an A2A-Version header; the tutorial's tasks/send)`);
  stopOnSignal("a2a-agent", async () => {
    await server.close();
    await pilot.close();
  });
}
