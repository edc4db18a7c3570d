/**
 * Trust: request_trust, list_trust_requests, approve_trust. Approving lets
 * another node talk to this one, so an agent may do it only when the user
 * said so: `pilot config --set mcp_allow_trust_approval=true` (read at each
 * call; default off).
 */
import { z } from "zod";
import { CliError } from "../../cli/errors.ts";
import { defineTool, iso, nullableString, str, target } from "../tool.ts";

export const TRUST_APPROVAL_KEY = "mcp_allow_trust_approval";

export const requestTrust = defineTool({
  name: "request_trust",
  title: "Request trust",
  description:
    "Ask another node for trust (both must agree; the other side's operator sees the reason and approves or rejects). Needed before messages, files, tasks or HTTP reach a private node. status 'trusted' means it had already asked this node, so trust holds now.",
  input: {
    target: target("the node to ask"),
    reason: z.string().max(500).optional().describe("why, shown to the other side's operator"),
  },
  output: {
    node_id: z.number(),
    address: z.string(),
    status: z.enum(["pending", "trusted"]),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async run(args, ctx) {
    const r = await (await ctx.daemon()).handshake(args.target, args.reason ?? "");
    return { node_id: r.node_id, address: r.address, status: r.status };
  },
});

export const listTrustRequests = defineTool({
  name: "list_trust_requests",
  title: "List trust requests",
  description: "Trust requests waiting for this node's answer (pending, with the requester's reason), and this node's own requests that are not answered yet (outgoing).",
  input: {},
  output: {
    pending: z.array(z.object({ node_id: z.number(), address: z.string(), hostname: nullableString, reason: z.string(), received_at: nullableString })),
    outgoing: z.array(z.object({ node_id: z.number(), address: z.string(), reason: z.string(), sent_at: nullableString })),
    approval_allowed: z.boolean().describe(`whether approve_trust may be used (the user's ${TRUST_APPROVAL_KEY} setting)`),
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async run(_args, ctx) {
    const r = await (await ctx.daemon()).pending();
    return {
      pending: r.pending.map((p) => ({ node_id: p.node_id, address: p.address, hostname: str(p.hostname), reason: p.reason ?? "", received_at: iso(p.received_at) })),
      outgoing: r.outgoing.map((p) => ({ node_id: p.node_id, address: p.address, reason: p.reason ?? "", sent_at: iso(p.sent_at) })),
      approval_allowed: approvalAllowed(ctx.config()),
    };
  },
});

function approvalAllowed(config: Record<string, string | undefined>): boolean {
  return config[TRUST_APPROVAL_KEY] === "true";
}

export const approveTrust = defineTool({
  name: "approve_trust",
  title: "Approve a trust request",
  description: `Approve a pending trust request (see list_trust_requests), after which that node may send messages, files, tasks and HTTP requests to this one. Allowed only when the user enabled it (pilot config --set ${TRUST_APPROVAL_KEY}=true); otherwise it fails with code unauthorized: ask the user to approve instead (pilot approve NODE).`,
  input: { target: target("the node whose request to approve (as list_trust_requests shows it)") },
  output: { node_id: z.number(), address: z.string(), status: z.literal("trusted") },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async run(args, ctx) {
    if (!approvalAllowed(ctx.config())) {
      throw new CliError(
        "unauthorized",
        "approving trust from an MCP client is switched off on this node",
        `ask the user to approve it (pilot approve ${args.target}), or to let MCP clients approve with: pilot config --set ${TRUST_APPROVAL_KEY}=true`,
      );
    }
    const r = await (await ctx.daemon()).approve(args.target);
    return { node_id: r.node_id, address: r.address, status: r.status };
  },
});
