/**
 * `pilot task …`: give work to another agent and take work from others
 * (the task service, Pilot port 1003; docs/SERVICES.md "Tasks").
 *
 *   submitter: task submit NODE --task "…" [--input FILE] [--wait]  ->  task show ID  ->  task approve|reject ID
 *   worker:    task queue  ->  task accept|decline ID  ->  task start [ID]  ->  task result ID --text|--file
 *   either:    task list [--received|--submitted] [--status S],  task cancel ID (submitter)
 *
 * `set-tasks on|off` advertises in the registry that this node takes tasks
 * (the tag `tasks`), so `pilot peers --search TAG --tasks` finds it.
 */
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { CommandSpec, GroupSpec } from "../command.ts";
import { CliError, usageError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { badValue, choiceOption, countOption, durationOption, targetArg, textOption } from "../args.ts";
import { ago, bytes, duration, isoTime, table } from "../format.ts";
import { TaskClient } from "../../driver/tasks.ts";
import { FINAL_TASK_STATES, TASK_LIMITS, TASK_STATES, type TaskInfo } from "../../protocol/tasks.ts";
import { writeFileAtomic } from "../../util/atomic-file.ts";

export const taskGroup: GroupSpec = { name: "task", description: "give tasks to other agents and work on theirs (port 1003)" };

/** The tag `set-tasks on` adds and `peers --tasks` looks for. */
export const TASKS_TAG = "tasks";

const DAEMON_ERRORS = ["not_running", "invalid_argument"] as const;
const ID_HINT = "task ids are 32 hex characters; a unique prefix of 6 or more will do (list them with: pilot task list)";

const TASK_FIELDS =
  "{id, role ('submitted'|'received'), peer, peer_node_id, description, state (queued|accepted|declined|running|succeeded|failed|cancelled|expired), reason, delivered, provisional, created_at, updated_at, accept_by, deadline_at, accepted_at, started_at, finished_at (ms since the epoch), input {size, sha256, name, file} | null, result {outcome, kind, size, sha256, name, delivered_at, text, file, worker_signature} | null, verdict {outcome, reason, decided_at, receipt, receipt_error} | null, undelivered, delivery_error}";

function idArg(text: string | undefined): string {
  if (text === undefined || text === "") throw usageError("a task id is required", ID_HINT);
  if (!/^[0-9a-fA-F]{6,32}$/.test(text)) throw badValue(`"${text.slice(0, 40)}" is not a task id`, ID_HINT);
  return text.toLowerCase();
}

function reasonOf(o: Record<string, any>): string | undefined {
  if (o.reason === true) throw usageError("--reason needs text", 'for example: --reason "not my field"');
  return o.reason === undefined ? undefined : textOption(o, "reason");
}

/** A local file for a payload: it must exist and fit inline; returns its absolute path. */
function payloadFile(text: string, flag: string): string {
  const path = resolve(text);
  if (!existsSync(path)) throw badValue(`${flag} ${text}: no such file`, `for example: ${flag} ./report.txt`);
  const st = statSync(path);
  if (!st.isFile()) throw badValue(`${flag} ${text} is not a regular file`);
  if (st.size > TASK_LIMITS.payload) throw badValue(`${flag} ${text} is ${bytes(st.size)}; tasks carry at most ${bytes(TASK_LIMITS.payload)} inline`, "send larger files with pilot send-file NODE FILE and name the file in the task");
  return path;
}

/** Whether the peer has heard of the change yet. */
function told(t: TaskInfo): string {
  return t.undelivered === 0 ? `${t.peer} is told` : `${t.peer} is told as soon as it is reachable${t.delivery_error ? ` (${oneLine(t.delivery_error, 100)})` : ""}`;
}

function short(id: string): string {
  return id.slice(0, 8);
}

/** One line of text, at most `n` characters (descriptions may hold newlines). */
function oneLine(text: string, n: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > n ? flat.slice(0, n - 1) + "…" : flat;
}

function stateText(t: TaskInfo): string {
  if (t.role === "submitted" && !t.delivered && t.state === "queued") return "queued (not delivered yet)";
  if (t.provisional) return `${t.state} (the worker has not confirmed)`;
  return t.state;
}

function when(ms: number | null, now = Date.now()): string {
  if (ms === null) return "-";
  const d = (ms - now) / 1000;
  return `${new Date(ms).toISOString()} (${d >= 0 ? `in ${duration(d)}` : ago(ms, now)})`;
}

function renderTask(t: TaskInfo): string {
  const lines = [
    `Task ${t.id}`,
    `  ${t.role === "submitted" ? "Worker:   " : "Submitter:"} ${t.peer}`,
    `  State:     ${stateText(t)}${t.reason ? ` (${oneLine(t.reason, 200)})` : ""}`,
    `  Task:      ${t.description.split("\n").join("\n             ")}`,
  ];
  if (t.input) lines.push(`  Input:     ${t.input.name || "(unnamed)"}, ${bytes(t.input.size)}${t.input.file ? `  ${t.input.file}` : t.input.size > 0 ? "  (no longer kept)" : ""}`);
  if (!FINAL_TASK_STATES.has(t.state)) {
    if (t.state === "queued") lines.push(`  Accept by: ${when(t.accept_by)}`);
    lines.push(`  Deadline:  ${when(t.deadline_at)}`);
  }
  lines.push(`  Created:   ${ago(t.created_at)}${t.started_at ? `, started ${ago(t.started_at)}` : ""}${t.finished_at ? `, ended ${ago(t.finished_at)}` : ""}`);
  if (t.result) {
    lines.push(`  Result:    ${t.result.outcome}, ${t.result.kind}${t.result.name ? ` ${t.result.name}` : ""}, ${bytes(t.result.size)} (sha256 ${t.result.sha256.slice(0, 16)}…, signed by the worker)`);
    if (t.result.text !== null && t.result.text !== undefined) lines.push("  ---", ...t.result.text.split("\n").map((l) => "  " + l), "  ---");
    else if (t.result.file) lines.push(`  Stored:    ${t.result.file}`);
  }
  if (t.verdict) {
    const receipt = t.verdict.receipt === "pending" ? `receipt waiting for the registry${t.verdict.receipt_error ? ` (${oneLine(t.verdict.receipt_error, 120)})` : ""}` : t.verdict.receipt === "submitted" ? "receipt taken by the registry" : `receipt refused by the registry: ${t.verdict.receipt_error ?? ""}`;
    lines.push(`  Verdict:   ${t.verdict.outcome}${t.verdict.reason ? ` (${oneLine(t.verdict.reason, 200)})` : ""}; ${receipt}`);
  }
  if (t.undelivered > 0 && t.delivery_error) lines.push(`  Pending:   ${t.undelivered} message${t.undelivered === 1 ? "" : "s"} for ${t.peer} not delivered yet (${oneLine(t.delivery_error, 160)}); retried until it answers`);
  else if (t.undelivered > 0) lines.push(`  Pending:   ${t.undelivered} message${t.undelivered === 1 ? "" : "s"} for ${t.peer} on the way`);
  else if (t.delivery_error) lines.push(`  Problem:   ${oneLine(t.delivery_error, 200)}`);
  const next = nextStep(t);
  if (next) lines.push(next);
  return lines.join("\n");
}

function nextStep(t: TaskInfo): string | null {
  const id = short(t.id);
  if (t.role === "received") {
    if (t.state === "queued") return `next: pilot task accept ${id}   (or: pilot task decline ${id} --reason "…")`;
    if (t.state === "accepted") return `next: pilot task start ${id}`;
    if (t.state === "running") return `next: pilot task result ${id} --text "…"   (or --file FILE; --failed if it did not work)`;
    return null;
  }
  if ((t.state === "succeeded" || t.state === "failed") && !t.verdict && !t.provisional) return `next: pilot task approve ${id}   (or: pilot task reject ${id} --reason "…")`;
  if (!FINAL_TASK_STATES.has(t.state)) return `wait for it: pilot task show ${id}   (cancel with: pilot task cancel ${id})`;
  return null;
}

function taskTable(tasks: TaskInfo[]): string {
  return table(
    ["ID", "ROLE", "PEER", "STATE", "AGE", "TASK"],
    tasks.map((t) => [short(t.id), t.role, t.peer, stateText(t), ago(t.created_at).replace(" ago", ""), oneLine(t.description, 48)]),
  );
}

/** The task as JSON output shows it: times as ms (as the daemon gives them) plus ISO strings for the main ones. */
function jsonTask(t: TaskInfo): Record<string, unknown> {
  return { ...t, created: isoTime(t.created_at), deadline: isoTime(t.deadline_at) };
}

async function saveTo(client: TaskClient, id: string, part: "input" | "result", file: string): Promise<{ file: string; bytes: number }> {
  const data = await client.read(id, part);
  const path = resolve(file);
  writeFileAtomic(path, data, 0o600);
  return { file: path, bytes: data.length };
}

// ---- commands --------------------------------------------------------------------

export const taskSubmitCommand: CommandSpec = {
  group: "task",
  name: "submit",
  args: "<target>",
  description: "Give a task to another node (it must trust you, or take tasks from anyone); it is delivered now or as soon as the node is reachable",
  options: [
    { flags: "--task <text>", description: "what to do (at most 8 KiB; put material in --input)" },
    { flags: "--input <file>", description: "a file the task needs (at most 4 MiB; larger ones with pilot send-file alongside)" },
    { flags: "--accept-within <duration>", description: "the worker must accept within this long, or the task expires (default 1h)" },
    { flags: "--deadline <duration>", description: "the task must be finished within this long (default 24h; at most 30d)" },
    { flags: "--wait", description: "wait until the task ends and print its result (live progress on a terminal); exit 1 unless it succeeded" },
  ],
  examples: [
    'pilot task submit agent-b --task "summarize the attached report" --input report.pdf --deadline 1h',
    'pilot task submit agent-b --task "translate to French: hello" --wait',
    "pilot peers --search nlp --tasks      # find nodes that take tasks",
  ],
  returns: { task: `the task as it stands: ${TASK_FIELDS}`, target: "the worker's address", saved: "with --wait and a file result: nothing (see task show --save-result)" },
  errors: ["not_found", "not_trusted", "limit_exceeded", "unauthorized", "task_failed", ...DAEMON_ERRORS],
  async run({ out }, [targetText], o) {
    const target = targetArg(targetText);
    if (o.task === undefined || o.task === true) throw usageError("--task is required", 'for example: pilot task submit agent-b --task "summarize this"');
    const task = textOption(o, "task") ?? "";
    if (task.trim() === "") throw badValue("--task must not be empty", 'for example: --task "summarize this"');
    if (Buffer.byteLength(task) > TASK_LIMITS.description) throw badValue(`--task is ${Buffer.byteLength(task)} bytes; at most ${TASK_LIMITS.description}`, "put the material in --input FILE and describe the task in a sentence");
    const input = o.input === undefined ? undefined : payloadFile(textOption(o, "input") ?? "", "--input");
    const acceptWithin = durationOption(o.acceptWithin, "--accept-within", { maxMs: TASK_LIMITS.durationMs });
    const deadline = durationOption(o.deadline, "--deadline", { maxMs: TASK_LIMITS.durationMs });
    for (const [flag, v] of [["--accept-within", acceptWithin], ["--deadline", deadline]] as const) if (v !== undefined && v < 1000) throw badValue(`${flag} must be at least 1s`, `for example: ${flag} 10m`);
    if (acceptWithin !== undefined && deadline !== undefined && acceptWithin > deadline) throw badValue("--accept-within is longer than --deadline", "the worker must accept before the deadline");
    await withDaemon(async (d) => {
      const client = new TaskClient(d);
      const t = await client.submit(target, {
        task,
        ...(input ? { inputFile: input } : {}),
        ...(acceptWithin !== undefined ? { acceptWithinMs: acceptWithin } : {}),
        ...(deadline !== undefined ? { deadlineMs: deadline } : {}),
      });
      if (!o.wait) {
        out.result({ task: jsonTask(t), target: t.target }, () =>
          [
            `task ${t.id} ${t.delivered ? `delivered to ${t.target}: queued until it accepts` : `queued for ${t.target}: not reachable now${t.delivery_error ? ` (${oneLine(t.delivery_error, 120)})` : ""}; delivered as soon as it is`}`,
            `  follow it with: pilot task show ${short(t.id)}   (or submit with --wait)`,
          ].join("\n"),
        );
        return;
      }
      const live = !out.json && process.stderr.isTTY;
      if (live) out.progress(`task ${short(t.id)} ${t.delivered ? `delivered to ${t.target}` : `waiting for ${t.target} to be reachable`}`);
      const started = Date.now();
      const done = await client.wait(t.id, {
        onChange: (x) => {
          if (live) out.progress(`  ${duration((Date.now() - started) / 1000).padStart(7)}  ${stateText(x)}${x.reason ? ` (${oneLine(x.reason, 100)})` : ""}`);
        },
      });
      if (done.state !== "succeeded") {
        throw new CliError("task_failed", `task ${done.id} ${done.state}${done.reason ? `: ${oneLine(done.reason, 300)}` : ""}${done.result?.text ? ` — ${oneLine(done.result.text, 300)}` : ""}`, `see it with: pilot task show ${short(done.id)}`);
      }
      out.result({ task: jsonTask(done), target: t.target }, () => {
        const r = done.result!;
        const body = r.text !== null ? r.text : `(${r.kind} result, ${bytes(r.size)}: save it with pilot task show ${short(done.id)} --save-result FILE)`;
        return `${body}\n${live ? `\ntask ${short(done.id)} succeeded; judge it with: pilot task approve ${short(done.id)} (or reject)` : ""}`.trimEnd();
      });
    });
  },
};

export const taskListCommand: CommandSpec = {
  group: "task",
  name: "list",
  description: "List tasks you submitted and received, newest first",
  options: [
    { flags: "--received", description: "only tasks given to this node" },
    { flags: "--submitted", description: "only tasks this node gave to others" },
    { flags: "--status <state>", description: `only tasks in this state: ${TASK_STATES.join(", ")}, or active / final` },
    { flags: "--limit <n>", description: "at most N tasks (default 100)" },
  ],
  examples: ["pilot task list", "pilot task list --received --status queued", "pilot --json task list --submitted --status active"],
  returns: { tasks: `[${TASK_FIELDS}]`, total: "tasks matching (all pages)" },
  errors: [...DAEMON_ERRORS],
  async run({ out }, _args, o) {
    if (o.received && o.submitted) throw usageError("--received and --submitted exclude each other", "leave both out for all tasks");
    const status = choiceOption(o.status, "--status", [...TASK_STATES, "active", "final"] as const, "running");
    const limit = countOption(o.limit, "--limit", 1000);
    const r = await withDaemon((d) =>
      new TaskClient(d).list({ ...(o.received ? { role: "received" as const } : o.submitted ? { role: "submitted" as const } : {}), ...(status ? { status } : {}), ...(limit ? { limit } : {}) }),
    );
    out.result({ tasks: r.tasks, total: r.total }, () =>
      r.total === 0 ? `no tasks${status ? ` ${status}` : ""}${o.received ? " received" : o.submitted ? " submitted" : ""}` : taskTable(r.tasks) + (r.total > r.tasks.length ? `\n(${r.tasks.length} of ${r.total}; more with --limit)` : ""),
    );
  },
};

export const taskShowCommand: CommandSpec = {
  group: "task",
  name: "show",
  args: "<id>",
  description: "Show one task: its state, deadlines, input, result (inline when short text) and verdict",
  options: [
    { flags: "--save-result <file>", description: "write the task's result to FILE" },
    { flags: "--save-input <file>", description: "write the task's input to FILE" },
  ],
  examples: ["pilot task show 3f2a9c1b", "pilot task show 3f2a9c1b --save-result summary.md"],
  returns: { task: TASK_FIELDS, saved: "with --save-*: [{part, file, bytes}]" },
  errors: ["not_found", ...DAEMON_ERRORS],
  async run({ out }, [text], o) {
    const id = idArg(text);
    for (const flag of ["saveResult", "saveInput"]) if (o[flag] === true) throw usageError(`--${flag === "saveResult" ? "save-result" : "save-input"} needs a file name`);
    const { t, saved } = await withDaemon(async (d) => {
      const client = new TaskClient(d);
      const t = await client.show(id);
      const saved: { part: string; file: string; bytes: number }[] = [];
      if (o.saveResult !== undefined) saved.push({ part: "result", ...(await saveTo(client, t.id, "result", String(textOption(o, "save-result") ?? o.saveResult))) });
      if (o.saveInput !== undefined) saved.push({ part: "input", ...(await saveTo(client, t.id, "input", String(textOption(o, "save-input") ?? o.saveInput))) });
      return { t, saved };
    });
    out.result({ task: jsonTask(t), ...(saved.length ? { saved } : {}) }, () => [renderTask(t), ...saved.map((s) => `${s.part} saved to ${s.file} (${bytes(s.bytes)})`)].join("\n"));
  },
};

function decisionCommand(kind: "accept" | "decline"): CommandSpec {
  return {
    group: "task",
    name: kind,
    args: "<id>",
    description: kind === "accept" ? "Accept a task given to this node (the submitter is told)" : "Decline a task given to this node (the submitter is told why)",
    options: [{ flags: "--reason <text>", description: "a note for the submitter" }],
    examples: [kind === "accept" ? "pilot task accept 3f2a9c1b" : 'pilot task decline 3f2a9c1b --reason "not my field"'],
    returns: { task: TASK_FIELDS },
    errors: ["not_found", "invalid_state", ...DAEMON_ERRORS],
    async run({ out }, [text], o) {
      const id = idArg(text);
      const reason = reasonOf(o);
      const t = await withDaemon((d) => (kind === "accept" ? new TaskClient(d).accept(id, reason) : new TaskClient(d).decline(id, reason)));
      out.result({ task: jsonTask(t) }, () => `task ${short(t.id)} ${t.state}; ${told(t)}${kind === "accept" ? `\nnext: pilot task start ${short(t.id)}` : ""}`);
    },
  };
}

export const taskAcceptCommand = decisionCommand("accept");
export const taskDeclineCommand = decisionCommand("decline");

export const taskStartCommand: CommandSpec = {
  group: "task",
  name: "start",
  args: "[id]",
  description: "Start working on an accepted task (without an id: the oldest accepted one); prints it with its input",
  examples: ["pilot task start", "pilot task start 3f2a9c1b"],
  returns: { task: TASK_FIELDS },
  errors: ["not_found", "invalid_state", ...DAEMON_ERRORS],
  async run({ out }, [text]) {
    const id = text === undefined ? undefined : idArg(text);
    const t = await withDaemon((d) => new TaskClient(d).start(id));
    out.result({ task: jsonTask(t) }, () => renderTask(t));
  },
};

export const taskResultCommand: CommandSpec = {
  group: "task",
  name: "result",
  args: "<id>",
  description: "Deliver a task's result to its submitter (signed by this node for the receipt); --failed reports failure",
  options: [
    { flags: "--text <text>", description: "the result as text" },
    { flags: "--file <file>", description: "the result as a file (at most 4 MiB; larger ones with pilot send-file alongside)" },
    { flags: "--failed", description: "the task failed; the text or file says why" },
  ],
  examples: ['pilot task result 3f2a9c1b --text "the summary: …"', "pilot task result 3f2a9c1b --file out.csv", 'pilot task result 3f2a9c1b --failed --text "the input is not a PDF"'],
  returns: { task: TASK_FIELDS },
  errors: ["not_found", "invalid_state", "limit_exceeded", ...DAEMON_ERRORS],
  async run({ out }, [text], o) {
    const id = idArg(text);
    const hasText = o.text !== undefined && o.text !== true;
    const hasFile = o.file !== undefined && o.file !== true;
    if (o.text === true || o.file === true) throw usageError(`--${o.text === true ? "text" : "file"} needs a value`);
    if (hasText === hasFile) throw usageError("give the result with --text or --file (one of them)", 'for example: pilot task result ID --text "done"');
    const resultText = hasText ? (textOption(o, "text") ?? "") : undefined;
    if (resultText !== undefined && Buffer.byteLength(resultText) > TASK_LIMITS.payload) throw badValue("--text is larger than 4 MiB", "send it as --file, or with pilot send-file for more");
    const file = hasFile ? payloadFile(textOption(o, "file") ?? "", "--file") : undefined;
    const t = await withDaemon((d) => new TaskClient(d).result(id, { ...(resultText !== undefined ? { text: resultText } : { file: file! }), ...(o.failed ? { failed: true } : {}) }));
    out.result({ task: jsonTask(t) }, () => `task ${short(t.id)} ${t.state}: result ${t.undelivered > 0 ? `queued for ${t.peer} (delivered as soon as it is reachable${t.delivery_error ? `; ${oneLine(t.delivery_error, 100)}` : ""})` : `delivered to ${t.peer}`}`);
  },
};

export const taskCancelCommand: CommandSpec = {
  group: "task",
  name: "cancel",
  args: "<id>",
  description: "Withdraw a task you submitted (the worker is told; if it already finished, its result stands)",
  options: [{ flags: "--reason <text>", description: "a note for the worker" }],
  examples: ["pilot task cancel 3f2a9c1b"],
  returns: { task: TASK_FIELDS },
  errors: ["not_found", "invalid_state", ...DAEMON_ERRORS],
  async run({ out }, [text], o) {
    const id = idArg(text);
    const t = await withDaemon((d) => new TaskClient(d).cancel(id, reasonOf(o)));
    out.result({ task: jsonTask(t) }, () =>
      t.state !== "cancelled"
        ? `task ${short(t.id)}: ${t.peer} had already finished it (${t.state}); its end stands`
        : `task ${short(t.id)} cancelled${t.delivered || t.provisional || t.undelivered > 0 ? `; ${told(t)}${t.provisional ? " (if it finished first, its result stands)" : ""}` : " before it reached the worker"}`,
    );
  },
};

function verdictCommand(kind: "approve" | "reject"): CommandSpec {
  return {
    group: "task",
    name: kind,
    args: "<id>",
    description:
      kind === "approve"
        ? "Accept a delivered result: this node signs the verdict, the worker learns it, and both hand the receipt to the registry (it moves the worker's polo score)"
        : "Reject a delivered result (a signed receipt too, with the outcome rejected)",
    options: [{ flags: "--reason <text>", description: "a note for the worker" }],
    examples: [kind === "approve" ? "pilot task approve 3f2a9c1b" : 'pilot task reject 3f2a9c1b --reason "the summary misses section 3"'],
    returns: { task: TASK_FIELDS },
    errors: ["not_found", "invalid_state", ...DAEMON_ERRORS],
    async run({ out }, [text], o) {
      const id = idArg(text);
      const reason = reasonOf(o);
      const t = await withDaemon((d) => (kind === "approve" ? new TaskClient(d).approve(id, reason) : new TaskClient(d).reject(id, reason)));
      out.result({ task: jsonTask(t) }, () => `task ${short(t.id)}: result ${t.verdict!.outcome}; ${told(t)}; the receipt goes to the registry (${t.verdict!.receipt === "submitted" ? "taken" : "retried until it takes it"})`);
    },
  };
}

export const taskApproveCommand = verdictCommand("approve");
export const taskRejectCommand = verdictCommand("reject");

export const taskQueueCommand: CommandSpec = {
  group: "task",
  name: "queue",
  description: "The tasks this node works on, oldest first: queued (to accept or decline), accepted (to start), running",
  examples: ["pilot task queue", "pilot --json task queue"],
  returns: { queue: `[{position, ...${TASK_FIELDS}}]`, count: "tasks in the queue", queued: "awaiting a decision", accepted: "waiting to start", running: "in progress", limit: "most unfinished tasks this node holds" },
  errors: [...DAEMON_ERRORS],
  async run({ out }) {
    const q = await withDaemon((d) => new TaskClient(d).queue());
    out.result(q, () =>
      q.count === 0
        ? "the queue is empty (others give you tasks with: pilot task submit THIS-NODE --task …; advertise with: pilot set-tasks on)"
        : table(
            ["#", "ID", "FROM", "STATE", "WAITING", "TASK"],
            q.queue.map((t) => [t.position, short(t.id), t.peer, t.state, ago(t.created_at).replace(" ago", ""), oneLine(t.description, 48)]),
          ) + `\n${q.queued} to decide, ${q.accepted} to start, ${q.running} running (at most ${q.limit})`,
    );
  },
};

export const setTasksCommand: CommandSpec = {
  name: "set-tasks",
  args: "<on|off>",
  description: `Advertise in the registry that this node takes tasks (the tag "${TASKS_TAG}"), or stop advertising it`,
  examples: ["pilot set-tasks on      # others find you with: pilot peers --search TAG --tasks", "pilot set-tasks off"],
  returns: { tasks: "true if this node now advertises that it takes tasks", tags: "this node's tags now" },
  errors: ["invalid_argument", "not_running", "registry_unavailable", "limit_exceeded"],
  async run({ out }, [value]) {
    if (value !== "on" && value !== "off") throw value === undefined ? usageError("say on or off", "for example: pilot set-tasks on") : badValue(`set-tasks takes on or off, got "${value}"`, "for example: pilot set-tasks on");
    const on = value === "on";
    const r = await withDaemon(async (d) => {
      if (on) {
        try {
          await d.call("task_policy");
        } catch (e) {
          if ((e as { code?: string }).code === "invalid_argument") throw new CliError("invalid_argument", "the task service is off on this daemon", "restart it without --no-tasks (and without tasks in config disabled_services)");
          throw e;
        }
      }
      const info = await d.info();
      const tags = Array.isArray(info.tags) ? (info.tags as string[]) : [];
      const next = on ? (tags.includes(TASKS_TAG) ? tags : [...tags, TASKS_TAG]) : tags.filter((t) => t !== TASKS_TAG);
      if (next.length > 10) throw new CliError("limit_exceeded", "this node already has 10 tags, the most it may have", "remove one with: pilot set-tags …");
      const set = next === tags ? { tags } : ((await d.call("set_tags", { tags: next })) as { tags: string[] });
      return { tasks: set.tags.includes(TASKS_TAG), tags: set.tags };
    });
    out.result(r, () =>
      r.tasks
        ? `this node advertises that it takes tasks (tag #${TASKS_TAG}); who may give it tasks: trusted nodes, or anyone if the daemon runs with --open-services tasks`
        : `this node no longer advertises tasks (tasks from trusted nodes are still taken; switch the service off with: pilot daemon start --no-tasks)`,
    );
  },
};

export const taskCommands: CommandSpec[] = [
  taskSubmitCommand,
  taskListCommand,
  taskShowCommand,
  taskAcceptCommand,
  taskDeclineCommand,
  taskStartCommand,
  taskResultCommand,
  taskCancelCommand,
  taskApproveCommand,
  taskRejectCommand,
  taskQueueCommand,
];
