/**
 * The 2025 launch-era A2A shapes that the tutorial (and its Python scripts)
 * use, answered beside the SDK's A2A 1.0 and 0.3 on the same paths:
 *
 *   POST /a2a  {"jsonrpc":"2.0","id":1,"method":"tasks/send",
 *               "params":{"message":{"role":"user","parts":[{"type":"text","text":"…"}]}}}
 *     -> {"jsonrpc":"2.0","id":1,"result":{"id":"…","status":{"state":"completed","message":"Analysis complete"},
 *         "artifacts":[{"name":"report","parts":[{"type":"text","text":"Sentiment: …"}]}]}}
 *   POST /a2a  tasks/get {"id": "…"}: that task again, to the caller that sent it
 *   GET  /.well-known/agent.json: the 0.3 card plus `capabilities.skills`, where the tutorial reads the skills
 *
 * Every other request goes on to the SDK unchanged, so `tasks/get` of an id
 * this module does not hold is the SDK's (0.3 `tasks/get`, or -32001 "Task
 * not found"), and unknown methods stay -32601.
 *
 * What a caller can make the agent hold is bounded: a request body is at
 * most MAX_BODY_BYTES (413 beyond), and the tasks kept for `tasks/get` are at
 * most MAX_TASKS_PER_CALLER per caller (its Pilot address) and MAX_TASKS in
 * all, the oldest evicted first. A caller sees only its own tasks.
 */
import { randomUUID } from "node:crypto";
import express, { type ErrorRequestHandler, type Request, type RequestHandler } from "express";
import { pickSkill, type Skill } from "./skills.ts";

/** Largest JSON-RPC request body, in bytes (the SDK's own limit is 100 KiB too). */
export const MAX_BODY_BYTES = 100 * 1024;
/** Tasks kept for tasks/get, in all and per caller. */
export const MAX_TASKS = 1000;
export const MAX_TASKS_PER_CALLER = 100;

export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const INVALID_PARAMS = -32602;
export const TASK_NOT_FOUND = -32001;

export interface LaunchEraTask {
  id: string;
  status: { state: "completed" | "failed"; message: string };
  artifacts: { name: string; parts: { type: "text"; text: string }[] }[];
}

/**
 * Tasks by caller and id, in insertion order (the oldest first). Full, it
 * evicts the caller's own oldest task first, then the oldest of all.
 */
export class LaunchEraTaskStore {
  private readonly tasks = new Map<string, { owner: string; task: LaunchEraTask }>();
  private readonly counts = new Map<string, number>();

  constructor(readonly limits: { total: number; perCaller: number } = { total: MAX_TASKS, perCaller: MAX_TASKS_PER_CALLER }) {}

  get size(): number {
    return this.tasks.size;
  }

  put(owner: string, task: LaunchEraTask): void {
    const key = keyOf(owner, task.id);
    if (this.tasks.has(key)) this.remove(key); // a re-sent id becomes the newest
    this.tasks.set(key, { owner, task });
    this.counts.set(owner, (this.counts.get(owner) ?? 0) + 1);
    if ((this.counts.get(owner) ?? 0) > this.limits.perCaller) {
      for (const [k, v] of this.tasks) {
        if (v.owner === owner) {
          this.remove(k);
          break;
        }
      }
    }
    while (this.tasks.size > this.limits.total) this.remove(this.tasks.keys().next().value!);
  }

  get(owner: string, id: string): LaunchEraTask | undefined {
    return this.tasks.get(keyOf(owner, id))?.task;
  }

  private remove(key: string): void {
    const entry = this.tasks.get(key);
    if (!entry) return;
    this.tasks.delete(key);
    const n = (this.counts.get(entry.owner) ?? 1) - 1;
    if (n === 0) this.counts.delete(entry.owner);
    else this.counts.set(entry.owner, n);
  }
}

function keyOf(owner: string, id: string): string {
  return `${owner}\u0000${id}`;
}

/** A client-chosen task id (the launch-era spec let the client pick one). */
const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

type RpcId = string | number | null;
type Reply = { result: unknown } | { error: { code: number; message: string } };

/**
 * Runs a launch-era `tasks/send` or `tasks/get` for `caller`. Undefined when
 * the request is not one this module answers (it goes on to the SDK).
 */
export function launchEraCall(
  body: unknown,
  caller: string,
  context: { skills: readonly Skill[]; store: LaunchEraTaskStore; log: (line: string) => void; newId?: () => string },
): { id: RpcId; reply: Reply } | undefined {
  if (!isObject(body) || (body.method !== "tasks/send" && body.method !== "tasks/get")) return undefined;
  const rawId = body.id;
  const id: RpcId = typeof rawId === "string" || typeof rawId === "number" ? rawId : null;
  if (rawId !== undefined && rawId !== null && id === null) return { id: null, reply: { error: { code: INVALID_REQUEST, message: "Invalid Request: id must be a string, a number or null" } } };
  const invalid = (message: string) => ({ id, reply: { error: { code: INVALID_PARAMS, message: `Invalid params: ${message}` } } });
  const params = body.params;

  if (body.method === "tasks/get") {
    if (!isObject(params) || typeof params.id !== "string") return invalid("params.id (the task's id) is required");
    const task = context.store.get(caller, params.id);
    return task ? { id, reply: { result: task } } : undefined; // not ours: the SDK's tasks/get answers (or says not found)
  }

  if (!isObject(params) || !isObject(params.message)) return invalid("params.message is required");
  const message = params.message;
  if (message.role !== undefined && typeof message.role !== "string") return invalid("params.message.role must be a string");
  if (!Array.isArray(message.parts)) return invalid("params.message.parts must be a list");
  if (params.id !== undefined && (typeof params.id !== "string" || !TASK_ID.test(params.id))) return invalid("params.id must be 1-128 letters, digits, '.', '_', ':' or '-'");
  const text = message.parts
    .map((p: unknown) => (isObject(p) && (p.type === "text" || p.kind === "text") && typeof p.text === "string" ? p.text : ""))
    .filter((t) => t !== "")
    .join("\n");
  const metadata = isObject(message.metadata) ? message.metadata : isObject(params.metadata) ? params.metadata : undefined;
  const skill = pickSkill(text, metadata, context.skills);
  const taskId = (params.id as string | undefined) ?? (context.newId ?? randomUUID)();
  let task: LaunchEraTask;
  try {
    const report = skill.run(text);
    task = { id: taskId, status: { state: "completed", message: skill.done }, artifacts: [{ name: "report", parts: [{ type: "text", text: report }] }] };
    context.log(`a2a-agent: task ${taskId} (${skill.card.id}) -> completed: ${report}`);
  } catch (error) {
    task = { id: taskId, status: { state: "failed", message: `${skill.card.name} failed: ${(error as Error).message}` }, artifacts: [] };
    context.log(`a2a-agent: task ${taskId} (${skill.card.id}) -> failed: ${(error as Error).message}`);
  }
  context.store.put(caller, task);
  return { id, reply: { result: task } };
}

/** Who is calling: the caller's Pilot address (a gateway's, for its HTTP clients). */
export function callerOf(req: Request): string {
  return req.socket.remoteAddress ?? "?";
}

function isJsonOrUntyped(req: { headers: Record<string, string | string[] | undefined> }): boolean {
  const type = req.headers["content-type"];
  return type === undefined || String(type).split(";")[0]!.trim().toLowerCase() === "application/json";
}

function rpcError(code: number, message: string) {
  return { jsonrpc: "2.0", id: null, error: { code, message } };
}

/** Body-parser failures as JSON-RPC errors: -32700 for bad JSON, 413 beyond the size limit. */
const bodyErrors: ErrorRequestHandler = (error, _req, res, next) => {
  const e = error as { type?: string; status?: number };
  if (e.type === "entity.parse.failed") res.status(200).json(rpcError(PARSE_ERROR, "Invalid JSON payload."));
  else if (e.type === "entity.too.large") res.status(413).json(rpcError(INVALID_REQUEST, `Request body larger than ${MAX_BODY_BYTES} bytes`));
  else if (typeof e.status === "number" && e.status >= 400 && e.status < 500) res.status(e.status).json(rpcError(INVALID_REQUEST, `Unreadable request body (${e.type ?? e.status})`));
  else next(error);
};

/**
 * The JSON-RPC endpoint's front: POST only (405 otherwise), a bounded JSON
 * body, and the launch-era methods; everything else goes on, parsed, to the
 * SDK's jsonRpcHandler mounted after it.
 */
export function launchEraRpc(context: { skills: readonly Skill[]; store: LaunchEraTaskStore; log: (line: string) => void }): express.Router {
  const router = express.Router();
  router.all("/", (req, res, next) => {
    if (req.method === "POST") return next();
    res.set("Allow", "POST").status(405).json({ error: `method ${req.method} not allowed: A2A JSON-RPC requests are POSTed`, allow: "POST" });
  });
  const handle: RequestHandler = (req, res, next) => {
    const call = launchEraCall(req.body, callerOf(req), context);
    if (!call) return next();
    res.status(200).json({ jsonrpc: "2.0", id: call.id, ...call.reply });
  };
  router.post("/", express.json({ limit: MAX_BODY_BYTES, type: isJsonOrUntyped }), bodyErrors, handle);
  return router;
}

/**
 * For /.well-known/agent.json: the 0.3 card the SDK serves there, with its
 * skills repeated as `capabilities.skills`, where the tutorial's card keeps
 * them. Top-level `skills`, `url`, `protocolVersion` and the rest stay as
 * the SDK wrote them; a 1.0 card (asked for with A2A-Version: 1.0) passes
 * unchanged.
 */
export function withCapabilitySkills(): RequestHandler {
  return (_req, res, next) => {
    const send = res.send.bind(res);
    res.send = (body?: unknown) => send(res.statusCode === 200 && typeof body === "string" ? addCapabilitySkills(body) : body);
    next();
  };
}

export function addCapabilitySkills(text: string): string {
  let card: unknown;
  try {
    card = JSON.parse(text);
  } catch {
    return text;
  }
  if (!isObject(card) || typeof card.protocolVersion !== "string" || !Array.isArray(card.skills)) return text;
  card.capabilities = { ...(isObject(card.capabilities) ? card.capabilities : {}), skills: card.skills };
  return JSON.stringify(card);
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
