/**
 * One MCP tool: its name, what it is for (the model reads `description`),
 * zod shapes for its input and output (the SDK checks both and publishes
 * them as JSON Schema), and `run`, which gets checked arguments and returns
 * the structured result. A tool only throws; turning a throw into an MCP
 * tool error (with the CLI's code and hint) is done once, in `register`.
 */
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Driver } from "../driver/index.ts";
import type { Config } from "../cli/config.ts";
import { errorResult, okResult } from "./errors.ts";

export interface ToolContext {
  /** The local daemon (connects on first use; `not_running` if none). */
  daemon(): Promise<Driver>;
  /** The user's $PILOT_HOME/config.json, read now (changes apply without a restart). */
  config(): Config;
}

export interface PilotTool<I extends z.ZodRawShape = z.ZodRawShape, O extends z.ZodRawShape = z.ZodRawShape> {
  readonly name: string;
  readonly title: string;
  readonly description: string;
  readonly input: I;
  readonly output: O;
  readonly annotations?: ToolAnnotations;
  run(args: z.infer<z.ZodObject<I>>, ctx: ToolContext): Promise<z.infer<z.ZodObject<O>>>;
}

/** Declares a tool with its types inferred from its shapes. */
export function defineTool<I extends z.ZodRawShape, O extends z.ZodRawShape>(tool: PilotTool<I, O>): PilotTool<I, O> {
  return tool;
}

/** Registers `tool`; its calls in progress are kept in `inflight` (so a shutdown can let them answer). */
export function register(server: McpServer, tool: PilotTool<any, any>, ctx: ToolContext, inflight: Set<Promise<unknown>>): void {
  const handle = async (args: Record<string, unknown>) => {
    try {
      return okResult((await tool.run(args, ctx)) as Record<string, unknown>);
    } catch (e) {
      return errorResult(e);
    }
  };
  server.registerTool(
    tool.name,
    { title: tool.title, description: tool.description, inputSchema: tool.input, outputSchema: tool.output, annotations: { title: tool.title, ...tool.annotations } },
    ((args: Record<string, unknown>) => {
      const call = handle(args);
      inflight.add(call);
      void call.finally(() => inflight.delete(call));
      return call;
    }) as any,
  );
}

// ---- shared schema pieces ------------------------------------------------------

/** A node named by address (N:NNNN.HHHH.LLLL), node id or hostname. */
export const target = (what: string) => z.string().trim().min(1).max(253).describe(`${what}: a Pilot address (0:0000.0000.002A), a node id (42) or a hostname (agent-b)`);

export const nullableString = z.string().nullable();

/** ms since the epoch (the daemon's) as ISO 8601, null for none. */
export function iso(ms: unknown): string | null {
  if (typeof ms === "string") return ms;
  return typeof ms === "number" && Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : null;
}

export const str = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
export const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
