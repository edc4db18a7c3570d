/**
 * A2A agents on the overlay: `a2a discover --tag TAG` finds the nodes you may
 * see that carry TAG (the registry search behind `peers --search`), reads
 * each one's Agent Card over Pilot (HTTP on its port 80, through the
 * daemon: no gateway needed), and lists the agents with their skills. A
 * node that cannot be reached or serves no card is listed with the reason.
 * When a gateway runs (`pilot gateway start`), each agent's local IP is shown
 * too, and `--map` maps the agents that have none: the tutorial's discovery
 * script in one command.
 */
import type { CommandSpec, GroupSpec } from "../command.ts";
import { progressWanted, startProgress } from "../progress.ts";
import type { Driver } from "../../driver/index.ts";
import { urlHostOf } from "../../driver/target.ts";
import { parseAddress } from "../../protocol/address.ts";
import { CliError, usageError, type ErrorCodeName } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { badValue, durationOption, optionText, portArg } from "../args.ts";
import { asCliError } from "../sockets.ts";
import { controlRequest } from "../../gateway/control.ts";
import { GatewayError } from "../../gateway/errors.ts";
import { gatewayDirs } from "../../gateway/run.ts";

export const a2aGroup: GroupSpec = { name: "a2a", description: "find A2A agents on the overlay and read their Agent Cards" };

/** Where an Agent Card lives: the current path first, then the one before A2A 0.3. */
export const CARD_PATHS = ["/.well-known/agent-card.json", "/.well-known/agent.json"] as const;
/** Cards larger than this are not read. */
const CARD_MAX_BYTES = 256 * 1024;

interface Hit {
  node_id: number;
  address: string;
  hostname: string | null;
  tags: string[];
  public: boolean;
  online: boolean;
  /** Its reputation as a worker, 0-100 (null if the registry does not show it). */
  polo_score: number | null;
}

export interface CardSkill {
  id: string;
  name: string;
  description: string;
  tags: string[];
}

export interface CardInterface {
  url: string;
  binding: string;
  version: string | null;
}

/** The parts of an Agent Card that discovery shows, from any version's shape. */
export interface CardSummary {
  name: string;
  description: string;
  version: string | null;
  /** The endpoint the card names first (where an A2A client will send requests). */
  url: string | null;
  interfaces: CardInterface[];
  streaming: boolean;
  skills: CardSkill[];
}

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

/**
 * Reads an Agent Card of A2A 1.0 (`supportedInterfaces`), 0.3 (`url`,
 * `preferredTransport`, `additionalInterfaces`) or the launch-era shape
 * (skills under `capabilities`). null if it is not a card at all.
 */
export function summarizeCard(card: unknown): CardSummary | null {
  if (!card || typeof card !== "object" || Array.isArray(card)) return null;
  const c = card as Record<string, any>;
  const name = str(c.name);
  if (name === null || name === "") return null;
  const interfaces: CardInterface[] = [];
  const add = (url: unknown, binding: unknown, version: unknown) => {
    const u = str(url);
    if (u === null || u === "") return;
    const entry = { url: u, binding: str(binding) ?? "JSONRPC", version: str(version) };
    if (!interfaces.some((i) => i.url === entry.url && i.binding === entry.binding && i.version === entry.version)) interfaces.push(entry);
  };
  if (Array.isArray(c.supportedInterfaces)) for (const i of c.supportedInterfaces) add(i?.url, i?.protocolBinding, i?.protocolVersion);
  add(c.url, c.preferredTransport, c.protocolVersion);
  if (Array.isArray(c.additionalInterfaces)) for (const i of c.additionalInterfaces) add(i?.url, i?.transport, c.protocolVersion);
  const rawSkills = Array.isArray(c.skills) ? c.skills : Array.isArray(c.capabilities?.skills) ? c.capabilities.skills : [];
  const skills = (rawSkills as unknown[])
    .filter((s): s is Record<string, unknown> => !!s && typeof s === "object")
    .map((s) => ({ id: str(s.id) ?? "", name: str(s.name) ?? str(s.id) ?? "", description: str(s.description) ?? "", tags: strings(s.tags) }));
  return {
    name,
    description: str(c.description) ?? "",
    version: str(c.version),
    url: interfaces[0]?.url ?? null,
    interfaces,
    streaming: c.capabilities?.streaming === true,
    skills,
  };
}

/** Why a node's card could not be read: a Pilot error code, or `not_a2a` (it answers, but with no card). */
export interface CardFailure {
  code: string;
  reason: string;
}

export type CardResult = { ok: true; card_url: string; card: CardSummary } | ({ ok: false } & CardFailure);

/** How a node goes into a URL: its hostname, else its address with dashes (N-NNNN-HHHH-LLLL). */
export function urlHostFor(node: { address: string; hostname: string | null }): string {
  if (node.hostname) return node.hostname;
  const parsed = parseAddress(node.address);
  return parsed.ok ? urlHostOf(parsed.value) : node.address;
}

async function readLimited(res: Response, max: number): Promise<string | null> {
  if (!res.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > max) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Fetches a node's Agent Card over Pilot: `agent-card.json`, then
 * `agent.json` if the first is missing or is no card. A connection failure
 * (no trust, nothing listening, offline, timeout) ends the attempt at once.
 */
export async function fetchCard(d: Driver, host: string, port: number, timeoutMs: number): Promise<CardResult> {
  const base = `http://${host}${port === 80 ? "" : `:${port}`}`;
  const tried: string[] = [];
  const signal = AbortSignal.timeout(timeoutMs);
  for (const path of CARD_PATHS) {
    const url = `${base}${path}`;
    let res: Response;
    let text: string | null;
    try {
      res = await d.fetch(url, { headers: { Accept: "application/json", "A2A-Version": "1.0" }, signal });
      text = await readLimited(res, CARD_MAX_BYTES);
    } catch (e) {
      if (signal.aborted) return { ok: false, code: "timeout", reason: `no answer on port ${port} within ${timeoutMs} ms` };
      const error = asCliError(e);
      return { ok: false, code: error.code, reason: error.message };
    }
    if (res.status !== 200) {
      tried.push(`${path}: HTTP ${res.status}`);
      continue;
    }
    if (text === null) {
      tried.push(`${path}: larger than ${CARD_MAX_BYTES} bytes`);
      continue;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      tried.push(`${path}: not JSON`);
      continue;
    }
    const card = summarizeCard(parsed);
    if (!card) {
      tried.push(`${path}: JSON without an agent name`);
      continue;
    }
    return { ok: true, card_url: url, card };
  }
  return { ok: false, code: "not_a2a", reason: `no Agent Card on port ${port} (${tried.join("; ")})` };
}

interface GatewayMapping {
  local_ip: string;
  pilot_addr: string;
  ports: number[];
}

function gatewayCliError(e: unknown): CliError {
  if (e instanceof GatewayError) return new CliError(e.code as ErrorCodeName, e.message, e.hint);
  return asCliError(e);
}

/**
 * The running gateway's mappings, or null when no gateway runs for this
 * PILOT_HOME. Other failures (a socket we may not use) are errors only when
 * the gateway is needed (`strict`).
 */
async function gatewayMappings(socket: string, strict: boolean): Promise<GatewayMapping[] | null> {
  try {
    const status = await controlRequest(socket, "status", {}, 3000);
    return Array.isArray(status?.mappings) ? status.mappings : [];
  } catch (e) {
    if (!strict || (e instanceof GatewayError && e.code === "not_running")) return null;
    throw gatewayCliError(e);
  }
}

/** `http://IP` (with `:port` unless 80): where any HTTP client reaches the agent through the gateway. */
function localUrl(ip: string, port: number): string {
  return `http://${ip}${port === 80 ? "" : `:${port}`}`;
}

function tagOption(value: unknown): string {
  if (value === undefined || value === true || value === "") throw usageError("--tag is required", "for example: pilot a2a discover --tag nlp");
  const tag = String(value).replace(/^#/, "").toLowerCase();
  if (!/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/.test(tag)) {
    throw badValue(`"${String(value)}" is not a tag`, "tags are lowercase letters, digits and inner hyphens, e.g. nlp");
  }
  return tag;
}

const indent = (lines: string[]) => lines.map((l) => `  ${l}`);

function describeInterfaces(card: CardSummary): string {
  if (card.url === null) return "-";
  const here = card.interfaces.filter((i) => i.url === card.url);
  const versions = [...new Set(here.map((i) => i.version).filter((v): v is string => v !== null))];
  const bindings = [...new Set(here.map((i) => i.binding))];
  const facts = [bindings.join("/"), ...(versions.length ? [`A2A ${versions.join(", ")}`] : []), ...(card.streaming ? ["streaming"] : [])];
  const more = card.interfaces.filter((i) => i.url !== card.url).length;
  return `${card.url}  (${facts.join("; ")})${more ? `, +${more} more interface${more === 1 ? "" : "s"}` : ""}`;
}

function renderText(d: any): string {
  const tag = `#${d.tag}`;
  if (d.total === 0) return `no visible node is tagged ${tag} (private nodes show up only once they trust you)`;
  const blocks: string[] = [];
  for (const a of d.agents) {
    const head = `${a.hostname ?? a.address}  ${a.address}  ${a.tags.map((t: string) => `#${t}`).join(" ")}`;
    const lines = [
      `card:    ${a.name}${a.version ? ` ${a.version}` : ""}${a.description ? `: ${a.description}` : ""}`,
      `url:     ${describeInterfaces(a)}`,
      `polo:    ${typeof a.polo_score === "number" ? a.polo_score : "-"}  (its reputation as a worker, 0-100; pilot reputation ${a.hostname ?? a.address})`,
      ...(a.local_url ? [`gateway: ${a.local_url}  (any HTTP or A2A client, e.g. ${a.local_url}/.well-known/agent-card.json)`] : a.map_error ? [`gateway: not mapped: ${a.map_error}`] : []),
      `skills:${a.skills.length ? "" : "  none listed"}`,
      ...a.skills.map((s: CardSkill) => `  - ${s.name}${s.id && s.id !== s.name ? ` (${s.id})` : ""}${s.description ? `: ${s.description}` : ""}`),
    ];
    blocks.push([head, ...indent(lines)].join("\n"));
  }
  for (const f of d.failed) {
    blocks.push(`${f.hostname ?? f.address}  ${f.address}  ${f.tags.map((t: string) => `#${t}`).join(" ")}\n  not listed: ${f.reason} (${f.code})`);
  }
  const n = d.agents.length;
  blocks.push(`${n} A2A agent${n === 1 ? "" : "s"} among ${d.total} visible node${d.total === 1 ? "" : "s"} tagged ${tag}`);
  return blocks.join("\n\n");
}

export const a2aDiscoverCommand: CommandSpec = {
  group: "a2a",
  name: "discover",
  description: "Find visible nodes with a tag and read each one's A2A Agent Card over Pilot (HTTP on port 80): name, address, endpoint, skills",
  options: [
    { flags: "--tag <tag>", description: "the tag to look for, e.g. nlp (required)" },
    { flags: "--port <port>", description: "the Pilot port the agents serve HTTP on (default 80)" },
    { flags: "--timeout <duration>", description: "how long to wait for each node's card (default 5s)" },
    { flags: "--map", description: "map every agent found through the running gateway (pilot gateway start) and show its local IP; without it, existing mappings are shown" },
  ],
  examples: [
    "pilot a2a discover --tag nlp",
    "pilot a2a discover --tag nlp --map    # with a gateway running: each agent at http://<local ip>/ for curl and A2A SDKs",
    "pilot --json a2a discover --tag nlp    # then: the SDK client (or curl through a gateway) on .data.agents[].url",
  ],
  returns: {
    tag: "the tag searched for",
    port: "the Pilot port the cards were fetched from",
    agents:
      "nodes with the tag that serve an Agent Card: [{node_id, address, hostname, tags, public, online, polo_score (its reputation as a worker, 0-100), card_url, name, description, version, url (the endpoint the card names), interfaces [{url, binding, version}], streaming, skills [{id, name, description, tags}], local_ip and local_url (its mapping in the running gateway, or null), map_error (with --map, if mapping failed)}]",
    failed: "nodes with the tag whose card could not be read: [{node_id, address, hostname, tags, public, online, polo_score, code (not_trusted, connection_refused, unreachable, timeout, not_a2a, ...), reason}]",
    total: "number of visible nodes with the tag (this node excluded)",
    gateway: "true if a gateway runs for this PILOT_HOME",
  },
  errors: ["usage", "invalid_argument", "not_running", "registry_unavailable", "unauthorized"],
  async run({ out }, _args, o) {
    const tag = tagOption(o.tag);
    const port = o.port === undefined ? 80 : portArg(optionText(o.port, "--port"), "--port");
    const timeoutMs = durationOption(o.timeout, "--timeout", { maxMs: 600_000 }) ?? 5000;
    const mapAll = o.map === true;
    const socket = gatewayDirs().socket;
    let mappings = await gatewayMappings(socket, mapAll);
    if (mapAll && mappings === null) {
      throw new CliError("not_running", "--map needs a running gateway, and none is running", "start one with: pilot gateway start --subnet 127.77.0.0/16 (no root), or: sudo pilot gateway start");
    }
    const data = await withDaemon(async (d) => {
      const r = (await d.call("peers", { search: tag })) as { peers: Record<string, any>[] };
      // The search also matches hostnames containing the word: keep the nodes that carry the tag.
      const hits: Hit[] = r.peers
        .filter((p) => Array.isArray(p.tags) && p.tags.includes(tag) && p.address !== d.address)
        .map((p) => ({ node_id: p.node_id, address: p.address, hostname: p.hostname || null, tags: p.tags, public: p.public === true, online: p.online === true, polo_score: typeof p.polo_score === "number" ? p.polo_score : null }));
      if (hits.length) out.progress(`reading the Agent Cards of ${hits.length} node${hits.length === 1 ? "" : "s"} tagged #${tag} over Pilot port ${port}...`);
      // On a terminal: how many cards are in, while the slowest node takes up to --timeout.
      let read = 0;
      const progress = startProgress({ enabled: hits.length > 0 && progressWanted(out.json), label: `Agent Cards read: 0 of ${hits.length}`, bytes: false, delayMs: 1000, intervalMs: 250 });
      const results = await Promise.all(
        hits.map((h) =>
          fetchCard(d, urlHostFor(h), port, timeoutMs).then((card) => {
            progress.relabel(`Agent Cards read: ${++read} of ${hits.length}`);
            return card;
          }),
        ),
      ).finally(() => progress.finish());
      const agents: Record<string, unknown>[] = [];
      const failed: Record<string, unknown>[] = [];
      for (const [i, h] of hits.entries()) {
        const res = results[i]!;
        if (!res.ok) {
          failed.push({ ...h, code: res.code, reason: res.reason });
          continue;
        }
        const agent: Record<string, unknown> = { ...h, card_url: res.card_url, ...res.card, local_ip: null, local_url: null };
        let mapped = mappings?.find((m) => m.pilot_addr === h.address && m.ports.includes(port));
        if (!mapped && mapAll) {
          try {
            mapped = ((await controlRequest(socket, "map", { target: h.address, ports: [port] })) as { mapping: GatewayMapping }).mapping;
            mappings = [...(mappings ?? []), mapped];
          } catch (e) {
            agent.map_error = gatewayCliError(e).message;
          }
        }
        if (mapped) Object.assign(agent, { local_ip: mapped.local_ip, local_url: localUrl(mapped.local_ip, port) });
        agents.push(agent);
      }
      return { tag, port, agents, failed, total: hits.length, gateway: mappings !== null };
    });
    out.result(data, renderText);
  },
};
