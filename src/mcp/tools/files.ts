/** Files (port 1001): send_file. */
import { isAbsolute } from "node:path";
import { statSync } from "node:fs";
import { z } from "zod";
import { CliError } from "../../cli/errors.ts";
import { defineTool, target } from "../tool.ts";

export const sendFile = defineTool({
  name: "send_file",
  title: "Send a file",
  description:
    "Send a local file to another node (it must trust this node); it lands in that node's received files. Streamed, verified by SHA-256 and resumed after a cut; returns once the receiver stored it. The path must be absolute, and the local daemon reads the file.",
  input: {
    target: target("the receiver"),
    path: z.string().min(1).max(4096).describe("absolute path of the file on this machine"),
    name: z.string().min(1).max(255).optional().describe("the name to offer (default: the file's own name; the receiver sanitises it)"),
    timeout_ms: z.number().int().min(1000).max(600_000).optional().describe("give up after this long without progress (default 30000)"),
  },
  output: {
    target: z.string(),
    name: z.string().describe("the name the receiver stored it under"),
    bytes: z.number(),
    sha256: z.string(),
    resumed_from: z.number(),
    seconds: z.number(),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async run(args, ctx) {
    if (!isAbsolute(args.path)) throw new CliError("invalid_argument", `"${args.path}" is not an absolute path`, "give the file's full path, e.g. /home/me/report.pdf");
    let isFile = false;
    try {
      isFile = statSync(args.path).isFile();
    } catch (e) {
      throw new CliError("not_found", `cannot read ${args.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, "check the path");
    }
    if (!isFile) throw new CliError("invalid_argument", `${args.path} is not a regular file`, "send one file at a time");
    const r = await (await ctx.daemon()).sendFile(args.target, args.path, { name: args.name, timeoutMs: args.timeout_ms });
    return { target: r.target, name: r.name, bytes: r.bytes, sha256: r.sha256, resumed_from: r.resumed_from, seconds: r.seconds };
  },
});
