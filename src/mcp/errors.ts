/**
 * How a failure reaches the MCP client: a tool result with `isError: true`
 * whose text is the CLI's own error envelope, `{"status":"error","code",
 * "message","hint"}`, so an agent reads the same codes and hints a user of
 * `pilot --json` does (src/cli/errors.ts). Daemon and driver errors are
 * mapped the way the CLI maps them (a missing daemon becomes `not_running`
 * with "start it with: pilot daemon start").
 *
 * No structuredContent on errors: clients check structuredContent against
 * the tool's output schema even when isError is set.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { CliError } from "../cli/errors.ts";
import { asCliError } from "../cli/sockets.ts";

export interface ToolErrorEnvelope {
  status: "error";
  code: string;
  message: string;
  hint?: string;
}

/** The CLI's error for anything a tool threw. */
export function toolErrorOf(e: unknown): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof DOMException && (e.name === "TimeoutError" || e.name === "AbortError")) return new CliError("timeout", "the request did not finish in time", "raise timeout_ms, or check that the peer answers (pilot ping NODE)");
  return asCliError(e);
}

export function errorEnvelope(e: unknown): ToolErrorEnvelope {
  const error = toolErrorOf(e);
  return { status: "error", code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
}

export function errorResult(e: unknown): CallToolResult {
  return { isError: true, content: [{ type: "text", text: JSON.stringify(errorEnvelope(e)) }] };
}

export function okResult(data: Record<string, unknown>): CallToolResult {
  return { structuredContent: data, content: [{ type: "text", text: JSON.stringify(data) }] };
}
