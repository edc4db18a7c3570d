/** Tasks (port 1003): submit_task, task_status. */
import { z } from "zod";
import { TaskClient, type TaskInfo } from "../../driver/index.ts";
import { defineTool, iso, nullableString, target } from "../tool.ts";

const task = {
  id: z.string(),
  role: z.enum(["submitted", "received"]),
  peer: z.string().describe("the worker of a submitted task, the submitter of a received one"),
  description: z.string(),
  state: z.string().describe("queued, accepted, running, succeeded, failed, declined, cancelled, expired, ..."),
  reason: z.string(),
  delivered: z.boolean().describe("the worker has the task (submitter only)"),
  created_at: nullableString,
  deadline_at: nullableString,
  finished_at: nullableString,
  result: z
    .object({ outcome: z.string(), kind: z.string(), size: z.number(), name: z.string(), text: nullableString.describe("the result itself when it is short text") })
    .nullable(),
  verdict: nullableString.describe("approved or rejected, once the submitter judged the result"),
};

function taskOf(t: TaskInfo): { [K in keyof typeof task]: z.infer<(typeof task)[K]> } {
  const verdict = (t as unknown as { verdict?: { outcome?: unknown } | null }).verdict;
  return {
    id: t.id,
    role: t.role,
    peer: t.peer,
    description: t.description,
    state: t.state,
    reason: t.reason ?? "",
    delivered: t.delivered === true,
    created_at: iso(t.created_at),
    deadline_at: iso(t.deadline_at),
    finished_at: iso(t.finished_at),
    result: t.result ? { outcome: String(t.result.outcome), kind: String(t.result.kind), size: t.result.size, name: t.result.name ?? "", text: t.result.text ?? null } : null,
    verdict: verdict && typeof verdict.outcome === "string" ? verdict.outcome : null,
  };
}

export const submitTask = defineTool({
  name: "submit_task",
  title: "Submit a task",
  description:
    "Give a task to another node that takes tasks (find them with find_agents, tag 'tasks'); it accepts or declines, works, and delivers a result. Returns the task id at once; follow it with task_status.",
  input: {
    target: target("the worker"),
    task: z.string().min(1).max(8192).describe("what to do"),
    input: z.string().max(4 * 1024 * 1024).optional().describe("material for the task, as text"),
    deadline_ms: z.number().int().min(1000).max(30 * 86_400_000).optional().describe("it must be finished within this long (default 24 h)"),
    wait_ms: z.number().int().min(0).max(60_000).optional().describe("how long to wait for the worker to take the submission (default 5000)"),
  },
  output: { ...task, target: z.string() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async run(args, ctx) {
    const t = await new TaskClient(await ctx.daemon()).submit(args.target, { task: args.task, input: args.input, deadlineMs: args.deadline_ms, waitMs: args.wait_ms });
    return { ...taskOf(t), target: t.target };
  },
});

export const taskStatus = defineTool({
  name: "task_status",
  title: "Show a task",
  description: "A task's state (submitted by this node or received by it) and, once delivered, its result (the text itself when short).",
  input: { id: z.string().trim().min(6).max(64).describe("the task id, or a unique prefix of 6+ hex characters") },
  output: task,
  annotations: { readOnlyHint: true, openWorldHint: false },
  async run(args, ctx) {
    return taskOf(await new TaskClient(await ctx.daemon()).show(args.id));
  },
});
