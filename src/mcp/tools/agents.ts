/**
 * find_agents: nodes with a tag (the registry search), each with its A2A
 * Agent Card read over Pilot (HTTP on the node's port 80:
 * /.well-known/agent-card.json, then /.well-known/agent.json; 256 KiB at
 * most) and its polo score. The card fetch is `pilot a2a discover`'s.
 */
import { z } from "zod";
import { fetchCard, urlHostFor } from "../../cli/commands/a2a.ts";
import { CliError } from "../../cli/errors.ts";
import { defineTool, nullableString, num, str } from "../tool.ts";

/** At most this many tagged nodes get their card read (the rest are counted in `total`). */
const MAX_AGENTS = 25;
const TAG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

const card = z.object({
  name: z.string(),
  description: z.string(),
  version: nullableString,
  url: nullableString.describe("the endpoint the card names for A2A requests"),
  streaming: z.boolean(),
  skills: z.array(z.object({ id: z.string(), name: z.string(), description: z.string(), tags: z.array(z.string()) })),
});

const agent = z.object({
  node_id: z.number(),
  address: z.string(),
  hostname: nullableString,
  tags: z.array(z.string()),
  public: z.boolean(),
  online: z.boolean(),
  polo_score: z.number().nullable().describe("its reputation as a worker, 0-100, from task receipts both parties signed; null if the registry does not show it"),
  card_url: nullableString,
  card: card.nullable().describe("its A2A Agent Card, or null (see card_error)"),
  card_error: z.object({ code: z.string(), reason: z.string() }).nullable().describe("why no card was read: not_trusted, connection_refused, unreachable, timeout, not_a2a, ..."),
});

export const findAgents = defineTool({
  name: "find_agents",
  title: "Find agents by tag",
  description:
    "Search the Pilot registry for agents (nodes) carrying a tag, e.g. 'nlp', and read each one's A2A Agent Card (name, description, skills, endpoint) over Pilot. Private nodes appear only once they trust you; a card can be read only from nodes that trust you or are public. Includes each node's polo score (reputation).",
  input: {
    tag: z.string().trim().min(1).max(64).describe("the tag, e.g. nlp (lowercase letters, digits, inner hyphens; a leading # is ignored)"),
    port: z.number().int().min(1).max(65535).optional().describe("the Pilot port the agents serve HTTP on (default 80)"),
    timeout_ms: z.number().int().min(100).max(30_000).optional().describe("how long to wait for each card (default 3000)"),
  },
  output: {
    tag: z.string(),
    agents: z.array(agent),
    total: z.number().describe("visible nodes with the tag (this node excluded)"),
    truncated: z.boolean().describe(`true when more than ${MAX_AGENTS} nodes matched and only the first were read`),
  },
  annotations: { readOnlyHint: true, openWorldHint: true },
  async run(args, ctx) {
    const tag = args.tag.replace(/^#/, "").toLowerCase();
    if (!TAG.test(tag)) throw new CliError("invalid_argument", `"${args.tag}" is not a tag`, "tags are lowercase letters, digits and inner hyphens, e.g. nlp");
    const port = args.port ?? 80;
    const timeoutMs = args.timeout_ms ?? 3000;
    const d = await ctx.daemon();
    const r = (await d.call("peers", { search: tag })) as { peers: Record<string, unknown>[] };
    // The search also matches hostnames containing the word: keep the nodes that carry the tag.
    const hits = r.peers
      .filter((p) => Array.isArray(p.tags) && p.tags.includes(tag) && p.address !== d.address)
      .map((p) => ({
        node_id: num(p.node_id) ?? 0,
        address: String(p.address),
        hostname: str(p.hostname),
        tags: (p.tags as unknown[]).map(String),
        public: p.public === true,
        online: p.online === true,
        polo_score: num(p.polo_score),
      }));
    const read = hits.slice(0, MAX_AGENTS);
    const cards = await Promise.all(read.map((h) => fetchCard(d, urlHostFor(h), port, timeoutMs)));
    const agents = read.map((h, i) => {
      const c = cards[i]!;
      if (!c.ok) return { ...h, card_url: null, card: null, card_error: { code: c.code, reason: c.reason } };
      const { name, description, version, url, streaming, skills } = c.card;
      return { ...h, card_url: c.card_url, card: { name, description, version, url, streaming, skills }, card_error: null };
    });
    // Agents with a card first.
    agents.sort((a, b) => Number(b.card !== null) - Number(a.card !== null));
    return { tag, agents, total: hits.length, truncated: hits.length > read.length };
  },
});
