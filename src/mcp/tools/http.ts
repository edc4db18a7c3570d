/**
 * http_request: one HTTP request to a port of another node, through Pilot
 * (the driver's fetch). The response body is read up to 1 MiB; the whole
 * exchange has a timeout.
 */
import { z } from "zod";
import { CliError } from "../../cli/errors.ts";
import { parseTarget, urlHostOf } from "../../driver/index.ts";
import { defineTool } from "../tool.ts";

export const HTTP_BODY_MAX = 1024 * 1024;
const TEXT_TYPES = /^(text\/|application\/(json|xml|javascript|x-www-form-urlencoded|[a-z.+-]*\+(json|xml)))/i;

async function readCapped(res: Response, max: number): Promise<{ data: Buffer; truncated: boolean }> {
  if (!res.body) return { data: Buffer.alloc(0), truncated: false };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { data: Buffer.concat(chunks), truncated: false };
    chunks.push(value);
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return { data: Buffer.concat(chunks).subarray(0, max), truncated: true };
    }
  }
}

export const httpRequest = defineTool({
  name: "http_request",
  title: "HTTP request to a peer",
  description: `Make an HTTP request to a service another node serves on a Pilot port (default 80; 'secure' uses Pilot's end-to-end secure channel, default port 443). The node must trust this one unless it is public and open. Text responses come back as text, others as base64; at most ${HTTP_BODY_MAX / 1024 / 1024} MiB of body.`,
  input: {
    target: z.string().trim().min(1).max(253).describe("the node: a Pilot address (0:0000.0000.002A), a node id (42) or a hostname (agent-b)"),
    port: z.number().int().min(1).max(65535).optional().describe("the Pilot port (default 80, or 443 with secure)"),
    method: z.enum(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]).optional().describe("default GET"),
    path: z.string().max(8192).regex(/^\/[^\s]*$/, "a path starts with / and has no spaces").optional().describe("path and query, e.g. /api/status?verbose=1 (default /)"),
    headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/), z.string().max(8192)).optional().describe("request headers"),
    body: z.string().max(4 * 1024 * 1024).optional().describe("request body (text)"),
    secure: z.boolean().optional().describe("use Pilot's secure channel (both nodes' identities checked, keys per connection)"),
    timeout_ms: z.number().int().min(100).max(120_000).optional().describe("for the whole request (default 15000)"),
  },
  output: {
    status: z.number(),
    status_text: z.string(),
    headers: z.record(z.string(), z.string()),
    body: z.string().describe("the response body: text, or base64 (see body_encoding)"),
    body_encoding: z.enum(["utf8", "base64"]),
    bytes: z.number().describe("body bytes returned"),
    truncated: z.boolean().describe(`true when the body was longer than ${HTTP_BODY_MAX} bytes`),
    url: z.string(),
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async run(args, ctx) {
    const method = args.method ?? "GET";
    if (args.body !== undefined && (method === "GET" || method === "HEAD")) throw new CliError("invalid_argument", `a ${method} request has no body`, "use POST, PUT or PATCH to send a body");
    const parsed = parseTarget(args.target);
    const host = parsed.kind === "address" ? urlHostOf(parsed.address) : parsed.hostname;
    const secure = args.secure === true;
    const port = args.port ?? (secure ? 443 : 80);
    const url = `${secure ? "https" : "http"}://${host}:${port}${args.path ?? "/"}`;
    const timeoutMs = args.timeout_ms ?? 15_000;
    const d = await ctx.daemon();
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const res = await d.fetch(url, { method, headers: args.headers, body: args.body, signal });
      const { data, truncated } = await readCapped(res, HTTP_BODY_MAX);
      const headers: Record<string, string> = {};
      res.headers.forEach((v, k) => (headers[k] = v));
      const type = res.headers.get("content-type") ?? "";
      const text = TEXT_TYPES.test(type) || (type === "" && !data.includes(0));
      return {
        status: res.status,
        status_text: res.statusText,
        headers,
        body: text ? data.toString("utf8") : data.toString("base64"),
        body_encoding: text ? ("utf8" as const) : ("base64" as const),
        bytes: data.length,
        truncated,
        url,
      };
    } catch (e) {
      if (signal.aborted) throw new CliError("timeout", `no complete answer from ${url} within ${timeoutMs} ms`, "raise timeout_ms, or check that the peer answers (pilot ping NODE)");
      throw e;
    }
  },
});
