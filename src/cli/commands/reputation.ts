/**
 * `pilot reputation NODE`: a node's polo score and how the registry reached
 * it (receipts counted, accepted and rejected, distinct submitters and their
 * networks, weights, caps). The score itself is computed by the registry from
 * receipts both parties signed (docs/REGISTRY.md §15); nothing here can set it.
 */
import type { CommandSpec } from "../command.ts";
import { withDaemon } from "../daemon-client.ts";
import { targetArg } from "../args.ts";
import { ago } from "../format.ts";

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const num = (x: number) => String(Math.round(x * 1000) / 1000);

function render(d: any): string {
  const capped: string[] = [];
  if (d.capped.submitters) capped.push(`${plural(d.capped.submitters, "submitter")} over ${d.method.per_submitter_cap} votes`);
  if (d.capped.networks) capped.push(`${plural(d.capped.networks, "network")} over ${d.method.per_network_cap}`);
  if (d.capped.newcomers) capped.push(`newcomers over ${d.method.newcomer_cap} together`);
  const c = d.counterparties;
  const s = d.as_submitter;
  return [
    `${d.hostname ?? "(no hostname)"}  ${d.address}  (node ${d.node_id})`,
    `  Polo score:    ${d.polo_score}  (0-100)`,
    `  Receipts:      ${d.receipts.accepted} accepted, ${d.receipts.rejected} rejected in the last ${d.method.horizon_weeks} weeks: ${plural(d.receipts.counted_votes, "vote")} (a submitter counts once per week)`,
    `  Submitters:    ${c.total} (${c.established} established, ${plural(c.newcomers, "newcomer")}), the established from ${plural(c.networks, "network")}`,
    `  Evidence:      P = ${num(d.evidence.positive)}, N = ${num(d.evidence.negative)};  ${d.method.formula} = ${d.polo_score}`,
    `  Caps applied:  ${capped.length ? capped.join("; ") : "none"}`,
    `  As submitter:  its verdicts weigh ${num(s.weight)} (age ${num(s.age_factor)}${s.established ? ", established" : ", a newcomer"}, registered ${ago(s.registered_at)}; standing ${num(s.standing)})`,
    "how the score is made: docs/REGISTRY.md, section 15 (Reputation)",
  ].join("\n");
}

export const reputationCommand: CommandSpec = {
  name: "reputation",
  args: "<node>",
  description: "Show a node's polo score and how the registry computed it from task receipts signed by both parties",
  examples: ["pilot reputation data-analyst", "pilot --json reputation 0:0000.0000.0007   # receipts, submitters, evidence, caps"],
  returns: {
    node_id: "the node's id",
    address: "its Pilot address",
    hostname: "its hostname, or null",
    polo_score: "its reputation as a worker, a whole number from 0 to 100",
    receipts: "{accepted, rejected} within the horizon, counted_votes (one per submitter per week), as_worker and as_submitter (all receipts stored)",
    counterparties: "{total, established, newcomers, networks}: the distinct submitters counted, and the networks the established ones registered from",
    evidence: "{positive, negative}: P and N in the formula, after weights and caps",
    capped: "{submitters, networks, newcomers}: where a cap cut evidence",
    as_submitter: "{registered_at, established, age_factor, standing, weight}: what this node's own verdicts weigh",
    method: "the formula and the constants (week_days, horizon_weeks, per_submitter_cap, per_network_cap, newcomer_cap, established_after_days)",
    computed_at: "when the registry computed it (unix ms)",
  },
  errors: ["not_found", "invalid_argument", "not_running", "registry_unavailable", "rate_limited"],
  async run({ out }, [text]) {
    const target = targetArg(text);
    const r = await withDaemon((d) => d.call("reputation", { target }));
    out.result(r, render);
  },
};
