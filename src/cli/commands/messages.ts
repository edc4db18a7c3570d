/**
 * The mailbox from the command line (port 1001; docs/SERVICES.md):
 *
 *   pilot send-message TARGET (--data TEXT | --data-file F | -) [--type text|json|binary] [--reply-to ID] [--wait D]
 *   pilot inbox [--from T] [--since 1h] [--unread] [--limit N]
 *   pilot inbox read ID [--from T] [--out FILE]
 *   pilot inbox clear [--before 24h] [--from T]
 *   pilot outbox [--clear | --cancel]
 *
 * send-message returns once the target stored the message (`stored: true`),
 * or, when it cannot be reached yet, once the message is safely in this
 * node's outbox (`stored: false`, state queued; delivery continues, also
 * across restarts). A refusal (quota_exceeded, too_large, not_trusted, ...) is
 * an error (exit 1).
 */
import { readFileSync, statSync, writeFileSync } from "node:fs";
import type { CommandSpec } from "../command.ts";
import { usageError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { progressWanted, startProgress } from "../progress.ts";
import { badValue, choiceOption, countOption, durationOption, optionText, targetArg, textOption } from "../args.ts";
import { ago, bytes as size, table } from "../format.ts";
import type { InboxMessage } from "../../driver/index.ts";
import { decodeUtf8, idFromText, idToText, MESSAGE_TYPES, type MessageType } from "../../protocol/exchange.ts";
import type { InboxEntry, InboxListResult, MessageSendResult, OutboxListResult } from "../../protocol/exchange-calls.ts";

/** Largest message the CLI reads from a file or stdin (the daemons' own limits are usually lower). */
const READ_LIMIT = 64 * 1024 * 1024;

function messageId(text: string | undefined, what: string): string {
  const id = text === undefined ? null : idFromText(text);
  if (!id) throw badValue(`${what} "${text ?? ""}" is not a message id`, "message ids look like 0190f4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d (see pilot inbox)");
  return idToText(id);
}

/** A lone "-" on the command line (the option parser drops it, so it is looked for here). */
function stdinDash(argv: readonly string[] = process.argv.slice(2)): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("-");
}

async function readStdin(): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of Bun.stdin.stream()) {
    n += chunk.length;
    if (n > READ_LIMIT) throw badValue(`stdin holds more than ${READ_LIMIT} bytes`, "send large data as a file: pilot send-file TARGET PATH");
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

function readDataFile(path: string): Uint8Array {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw badValue(`--data-file ${path}: no such file`);
  }
  if (!st.isFile()) throw badValue(`--data-file ${path} is not a regular file`);
  if (st.size > READ_LIMIT) throw badValue(`--data-file ${path} is ${st.size} bytes; messages are for small data`, `send it as a file: pilot send-file TARGET ${path}`);
  return new Uint8Array(readFileSync(path));
}

/** The message's data as the command line gave it, and its type. */
async function messageData(o: Record<string, any>, dash: boolean): Promise<{ data: Uint8Array; type: MessageType }> {
  const text = textOption(o, "data");
  const file = o.dataFile !== undefined ? optionText(o.dataFile, "--data-file") : undefined;
  const sources = [text !== undefined, file !== undefined, dash].filter(Boolean).length;
  if (sources === 0) throw usageError("say what to send: --data TEXT, --data-file FILE, or - for stdin", 'for example: pilot send-message agent-b --data "hello"');
  if (sources > 1) throw usageError("give only one of --data, --data-file and -");
  const data = text !== undefined ? new TextEncoder().encode(text) : file !== undefined ? readDataFile(file) : await readStdin();
  const given = choiceOption(o.type, "--type", MESSAGE_TYPES, "text");
  const type = given ?? (decodeUtf8(data) === null ? "binary" : "text");
  if (type !== "binary" && decodeUtf8(data) === null) throw badValue(`the data is not UTF-8 text, so it cannot be sent as --type ${type}`, "send it with --type binary");
  if (type === "json") {
    try {
      JSON.parse(new TextDecoder().decode(data));
    } catch (e) {
      throw badValue(`the data is not valid JSON (${(e as Error).message})`, `for example: --type json --data '{"task":"summarize"}'`);
    }
  }
  return { data, type };
}

/** A message's data for JSON output: text as a string, json as its value, binary as base64. */
function dataFields(m: InboxMessage): Record<string, unknown> {
  if (m.type === "binary") return { data_base64: Buffer.from(m.data).toString("base64") };
  if (m.type === "json") {
    try {
      return { data: m.json() };
    } catch {
      return { data: m.text() };
    }
  }
  return { data: m.text() };
}

function messageJson(m: InboxMessage): Record<string, unknown> {
  const { data: _data, text: _text, json: _json, preview: _preview, ...entry } = m;
  return { ...entry, ...dataFields(m) };
}

function renderMessage(m: InboxMessage): string {
  const head = [
    `message ${m.id}`,
    `  from:      ${m.from}`,
    `  received:  ${m.received_at} (${ago(m.received_at)})`,
    `  type:      ${m.type}, ${size(m.bytes)}`,
    ...(m.reply_to ? [`  reply to:  ${m.reply_to}`] : []),
    "",
  ];
  const body = m.type === "binary" ? `(${m.bytes} bytes of binary data; write them out with --out FILE, or see them as base64 with --json)` : m.text();
  return [...head, body].join("\n");
}

const sendReturns = {
  target: "the target's address",
  id: "the message id (a UUID); replies name it in reply_to",
  type: "text, json or binary",
  bytes: "size of the data",
  stored: "true once the target acknowledged it stored the message durably",
  state: "delivered, or queued (in this node's outbox: delivery continues, also across restarts; see pilot outbox)",
  error: "why the last delivery attempt failed (when queued), else null",
  reply: "with --wait: the reply {id, from, type, bytes, received_at, reply_to, data | data_base64}",
};

export const sendMessageCommand: CommandSpec = {
  name: "send-message",
  args: "<target> [dash]",
  description: "Send a message to a node's inbox (kept there until read; queued here while the node is unreachable)",
  options: [
    { flags: "--data <text>", description: "the message" },
    { flags: "--data-file <file>", description: "read the message from a file" },
    { flags: "--type <type>", description: "text, json or binary (default: text, or binary for data that is not UTF-8)" },
    { flags: "--reply-to <id>", description: "the id of the message this one answers" },
    { flags: "--wait <duration>", description: "then wait this long for TARGET's reply to this message and print it" },
    { flags: "--timeout <duration>", description: "how long to wait for TARGET to acknowledge before returning with state queued (default 15s)" },
  ],
  examples: [
    'pilot send-message agent-b --data "hello"',
    `pilot send-message agent-b --type json --data '{"task":"summarize","url":"https://example.com"}' --wait 60s`,
    "cat report.txt | pilot send-message agent-b -",
    "pilot send-message agent-a --reply-to 0190f4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d --data done",
  ],
  returns: sendReturns,
  errors: ["usage", "invalid_argument", "not_found", "quota_exceeded", "too_large", "not_trusted", "connection_refused", "timeout", "not_running"],
  async run({ out }, [targetText, dashText], o) {
    const target = targetArg(targetText);
    if (dashText !== undefined && dashText !== "-") throw usageError(`unexpected "${dashText}" (use - to read the message from stdin)`);
    const waitMs = durationOption(o.wait, "--wait", { maxMs: 24 * 3_600_000 });
    const timeoutMs = durationOption(o.timeout, "--timeout", { allowZero: true, maxMs: 3_600_000 });
    const replyTo = o.replyTo !== undefined ? messageId(optionText(o.replyTo, "--reply-to"), "--reply-to") : undefined;
    const { data, type } = await messageData(o, dashText === "-" || stdinDash());
    // Waiting for the target's acknowledgement (up to --timeout) or its reply (--wait): say so on a terminal.
    const progress = startProgress({ enabled: progressWanted(out.json), label: `delivering to ${target}`, bytes: false, delayMs: 1000, intervalMs: 500 });
    const r = await withDaemon(async (d) => {
      const sent: MessageSendResult = await d.sendMessage(target, data, { type, ...(replyTo ? { replyTo } : {}), ...(timeoutMs !== undefined ? { waitMs: timeoutMs } : {}) });
      if (waitMs === undefined) return { sent };
      progress.relabel(`waiting for ${target}'s reply`);
      const reply = await d.inbox.waitForReply(sent.target, sent.id, waitMs);
      return { sent, reply };
    }).finally(() => progress.finish());
    const data_ = { ...r.sent, ...(r.reply ? { reply: messageJson(r.reply) } : {}) };
    out.result(data_, () => {
      const s = r.sent;
      const line = s.stored
        ? `message ${s.id} (${type}, ${size(s.bytes)}) stored by ${s.target}`
        : `message ${s.id} (${type}, ${size(s.bytes)}) queued for ${s.target}: ${s.error ? `${s.error.message}; ` : ""}delivery continues in the background (see: pilot outbox)`;
      if (!r.reply) return line;
      return `${line}\n\n${renderMessage(r.reply)}`;
    });
  },
};

function renderList(d: InboxListResult): string {
  if (d.messages.length === 0) return d.total === 0 ? "no messages" : "no messages match";
  const rows = d.messages.map((m: InboxEntry) => [m.id, m.from, m.type, size(m.bytes), ago(m.received_at), m.read ? "read" : "new", m.preview ?? (m.type === "binary" ? "(binary)" : "")]);
  const more = d.total > d.messages.length ? `\n${d.total - d.messages.length} more (raise --limit)` : "";
  return `${table(["ID", "FROM", "TYPE", "SIZE", "RECEIVED", "STATE", "PREVIEW"], rows)}${more}\n${d.unread} unread; read one with: pilot inbox read ID`;
}

export const inboxCommand: CommandSpec = {
  name: "inbox",
  args: "[action] [id]",
  description: "List the messages peers sent this node; also: inbox read ID, inbox clear",
  options: [
    { flags: "--from <target>", description: "only messages from this node" },
    { flags: "--since <duration>", description: "list: only messages that arrived within this long, e.g. 1h" },
    { flags: "--unread", description: "list: only unread messages" },
    { flags: "--limit <n>", description: "list: at most N messages, newest first (default 50)" },
    { flags: "--before <duration>", description: "clear: only messages older than this, e.g. 24h" },
    { flags: "--out <file>", description: "read: write the message's data to FILE instead of printing it" },
  ],
  examples: ["pilot inbox --unread", "pilot inbox --from agent-b --since 1h", "pilot inbox read 0190f4c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d", "pilot inbox clear --before 24h"],
  returns: {
    messages: "list: [{id, from, type, bytes, received_at, read, reply_to, preview}], newest first",
    total: "list: messages that match (before --limit)",
    unread: "list: unread messages in the inbox",
    bytes: "list: bytes the inbox holds",
    id: "read: the message id",
    from: "read: the sender (the authenticated address it came from)",
    type: "read: text, json or binary",
    data: "read: the data (text as a string, json as its value)",
    data_base64: "read: the data of a binary message",
    cleared: "clear: messages deleted",
  },
  errors: ["usage", "invalid_argument", "not_found", "not_running"],
  async run({ out }, [action, idText], o) {
    const from = o.from !== undefined ? targetArg(optionText(o.from, "--from")) : undefined;
    if (action === undefined || action === "list") {
      if (idText !== undefined) throw usageError(`unexpected "${idText}"`, "read a message with: pilot inbox read ID");
      const sinceMs = durationOption(o.since, "--since", { maxMs: 100 * 365 * 24 * 3_600_000 });
      const limit = countOption(o.limit, "--limit", 10_000);
      const r = await withDaemon((d) => d.inbox.list({ ...(from ? { from } : {}), ...(sinceMs !== undefined ? { sinceMs } : {}), unread: o.unread === true, ...(limit ? { limit } : {}) }));
      out.result(r, renderList);
      return;
    }
    if (action === "read") {
      const id = messageId(idText, "the message id");
      const m = await withDaemon((d) => d.inbox.read(id, from ? { from } : {}));
      const file = o.out !== undefined ? optionText(o.out, "--out") : undefined;
      if (file !== undefined) {
        writeFileSync(file, m.data, { mode: 0o600 });
        const { data: _d, text: _t, json: _j, preview: _p, ...entry } = m;
        out.result({ ...entry, file }, () => `message ${m.id} from ${m.from} (${m.type}, ${size(m.bytes)}) written to ${file}`);
        return;
      }
      out.result(messageJson(m), () => renderMessage(m));
      return;
    }
    if (action === "clear") {
      if (idText !== undefined) throw usageError(`unexpected "${idText}"`, "clear takes --before and --from, not ids");
      const beforeMs = durationOption(o.before, "--before", { allowZero: true, maxMs: 100 * 365 * 24 * 3_600_000 });
      const r = await withDaemon((d) => d.inbox.clear({ ...(beforeMs !== undefined ? { beforeMs } : {}), ...(from ? { from } : {}) }));
      out.result(r, (x) => `cleared ${x.cleared} message${x.cleared === 1 ? "" : "s"} (${size(x.bytes)})`);
      return;
    }
    throw usageError(`unknown inbox action "${action}"`, "actions: pilot inbox, pilot inbox read ID, pilot inbox clear");
  },
};

export const outboxCommand: CommandSpec = {
  name: "outbox",
  description: "Messages this node sent: queued (delivery continues), delivered, failed (why)",
  options: [
    { flags: "--clear", description: "forget delivered and failed messages" },
    { flags: "--cancel", description: "also drop queued messages (they are not delivered)" },
    { flags: "--limit <n>", description: "at most N messages, newest first (default 50)" },
  ],
  examples: ["pilot outbox", "pilot outbox --clear"],
  returns: {
    messages: "[{id, target, type, bytes, created_at, state, attempts, next_attempt_at, done_at, error}]",
    queued: "messages still to deliver",
    failed: "messages refused for good",
    removed: "with --clear or --cancel: entries removed",
  },
  errors: ["invalid_argument", "not_running"],
  async run({ out }, _args, o) {
    if (o.clear || o.cancel) {
      const r = (await withDaemon((d) => d.call("outbox_clear", { cancel: o.cancel === true }))) as { removed: number };
      out.result(r, (x) => `removed ${x.removed} outbox entr${x.removed === 1 ? "y" : "ies"}`);
      return;
    }
    const limit = countOption(o.limit, "--limit", 10_000);
    const r = (await withDaemon((d) => d.inbox.outbox(limit ? { limit } : {}))) as OutboxListResult;
    out.result(r, (d: OutboxListResult) => {
      if (d.messages.length === 0) return "the outbox is empty";
      const rows = d.messages.map((m) => [m.id, m.target, m.type, size(m.bytes), ago(m.created_at), m.state, m.attempts, m.error ? `${m.error.code}: ${m.error.message}` : ""]);
      return `${table(["ID", "TARGET", "TYPE", "SIZE", "SENT", "STATE", "TRIES", "LAST ERROR"], rows)}\n${d.queued} queued, ${d.failed} failed`;
    });
  },
};
