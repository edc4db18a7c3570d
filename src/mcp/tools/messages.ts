/** Messages (port 1001): send_message, list_inbox, read_message. */
import { z } from "zod";
import { CliError } from "../../cli/errors.ts";
import type { InboxEntry } from "../../driver/index.ts";
import { defineTool, nullableString, target } from "../tool.ts";

/** read_message returns at most this much of a message's data. */
export const MESSAGE_READ_MAX = 1024 * 1024;

const entry = z.object({
  id: z.string(),
  from: z.string().describe("the sender's address (authenticated)"),
  type: z.string().describe("text, json or binary"),
  bytes: z.number(),
  received_at: z.string(),
  read: z.boolean(),
  reply_to: nullableString,
  preview: nullableString.describe("the first characters of a text or json message"),
});

function entryOf(e: InboxEntry): z.infer<typeof entry> {
  return { id: e.id, from: e.from, type: e.type, bytes: e.bytes, received_at: String(e.received_at), read: e.read, reply_to: e.reply_to ?? null, preview: e.preview ?? null };
}

export const sendMessage = defineTool({
  name: "send_message",
  title: "Send a message",
  description:
    "Send a message to another node's inbox (it must trust this node). Text by default; type 'json' sends a JSON document (the text must parse). Delivery is durable: state 'delivered' once the receiver stored it, 'queued' if it is not reachable yet (delivery continues in the background).",
  input: {
    target: target("the receiver"),
    text: z.string().max(4 * 1024 * 1024).describe("the message; for type json, a JSON document"),
    type: z.enum(["text", "json"]).optional().describe("default text"),
    reply_to: z.string().max(128).optional().describe("the id of the message this answers"),
    wait_ms: z.number().int().min(0).max(60_000).optional().describe("how long to wait for the receiver's acknowledgement (default 10000; 0: do not wait)"),
  },
  output: {
    target: z.string(),
    id: z.string(),
    type: z.string(),
    bytes: z.number(),
    stored: z.boolean().describe("the receiver acknowledged it durably"),
    state: z.string().describe("delivered, queued (delivery continues) or failed"),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async run(args, ctx) {
    const type = args.type ?? "text";
    if (type === "json") {
      try {
        JSON.parse(args.text);
      } catch (e) {
        throw new CliError("invalid_argument", `text is not JSON: ${(e as Error).message}`, "send it as type text, or fix the JSON");
      }
    }
    const r = await (await ctx.daemon()).sendMessage(args.target, args.text, { type, replyTo: args.reply_to, waitMs: args.wait_ms ?? 10_000 });
    return { target: r.target, id: r.id, type: r.type, bytes: r.bytes, stored: r.stored, state: r.state, error: r.error ? { code: r.error.code, message: r.error.message } : null };
  },
});

export const listInbox = defineTool({
  name: "list_inbox",
  title: "List the inbox",
  description: "Messages other nodes sent to this one, newest first, with a preview; read one whole with read_message.",
  input: {
    from: target("only messages from this node").optional(),
    unread: z.boolean().optional().describe("only unread messages"),
    limit: z.number().int().min(1).max(200).optional().describe("at most this many (default 20)"),
  },
  output: {
    messages: z.array(entry),
    total: z.number().describe("messages that match, before the limit"),
    unread: z.number().describe("unread messages in the whole inbox"),
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async run(args, ctx) {
    const r = await (await ctx.daemon()).inbox.list({ from: args.from, unread: args.unread, limit: args.limit ?? 20 });
    return { messages: r.messages.map(entryOf), total: r.total, unread: r.unread };
  },
});

export const readMessage = defineTool({
  name: "read_message",
  title: "Read a message",
  description: `One message from the inbox with its content (marks it read): text and json as text, binary as base64; at most ${MESSAGE_READ_MAX / 1024 / 1024} MiB of it.`,
  input: {
    id: z.string().trim().min(1).max(128).describe("the message id (from list_inbox)"),
    from: target("the sender, when several senders used the same id").optional(),
  },
  output: {
    message: entry,
    text: nullableString.describe("the content, for text and json messages"),
    base64: nullableString.describe("the content, for binary messages"),
    truncated: z.boolean().describe(`true when the message is larger than ${MESSAGE_READ_MAX} bytes and only the start is here`),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async run(args, ctx) {
    const d = await ctx.daemon();
    // inbox_read chunk by chunk (Inbox.read would read all of it), up to the cap.
    const chunks: Buffer[] = [];
    let size = 0;
    let message: InboxEntry;
    let more = false;
    for (;;) {
      const r = (await d.call("inbox_read", { id: args.id, offset: size, ...(args.from ? { from: args.from } : {}) })) as { message: InboxEntry; data: string; more: boolean };
      message = r.message;
      const chunk = Buffer.from(r.data, "base64");
      chunks.push(chunk);
      size += chunk.length;
      more = r.more && chunk.length > 0;
      if (!more || size >= MESSAGE_READ_MAX) break;
    }
    const data = Buffer.concat(chunks).subarray(0, MESSAGE_READ_MAX);
    const truncated = more || size > MESSAGE_READ_MAX;
    const binary = message.type === "binary";
    return { message: entryOf(message), text: binary ? null : data.toString("utf8"), base64: binary ? data.toString("base64") : null, truncated };
  },
});
