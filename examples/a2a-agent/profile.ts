/**
 * Who the agent is: its name, description and skills, and the Pilot port it
 * serves on, from command-line options, the environment or a skills file.
 * The defaults are the tutorial's data-analyst on port 80.
 *
 *   --name NAME          AGENT_NAME          the card's name
 *   --description TEXT   AGENT_DESCRIPTION   the card's description
 *   --skills FILE        AGENT_SKILLS_FILE   a JSON skills file (below)
 *   --port N             PORT                the Pilot port (default 80)
 *                        STEP_MS             pause between a task's progress updates (default 150)
 *
 * An option wins over its variable, which wins over the file's own `name` and
 * `description`. A skills file is either a list of skills or an object
 * `{"name", "description", "version", "skills": [...]}`; each skill is
 * `{"id", "name", "description", "tags", "examples", "keywords", "steps",
 * "done", "report"}` (id, name and description required). A skill with the
 * id of a built-in skill (sentiment-analysis, data-summary) and no `report`
 * keeps the built-in's behaviour; any other answers with its `report`, in
 * which `{input}` stands for the request's text. See agents/*.json.
 *
 * Everything here is checked: a bad value is a UsageError naming the option
 * and what it should be (the agent prints it as one line and exits 2).
 */
import { readFileSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import { skillFromSpec, SKILLS, type Skill, type SkillSpec } from "./skills.ts";

export interface AgentProfile {
  readonly name: string;
  readonly description: string;
  readonly version: string;
  readonly skills: readonly Skill[];
}

/** The tutorial's agent. */
export const DEFAULT_PROFILE: AgentProfile = {
  name: "data-analyst",
  description: "Analyzes datasets and produces structured reports",
  version: "1.0.0",
  skills: SKILLS,
};

export const DEFAULT_PORT = 80;
export const DEFAULT_STEP_MS = 150;

/** Bounds on what a skills file may hold. */
export const SKILLS_FILE_MAX_BYTES = 256 * 1024;
export const MAX_SKILLS = 32;
const MAX_LIST = 32;
const MAX_NAME = 64;
const MAX_TEXT = 1000;

export class UsageError extends Error {
  override name = "UsageError";
}

export interface AgentSettings {
  profile: AgentProfile;
  port: number;
  stepMs: number;
  /** The skills file read, if any. */
  skillsFile?: string;
}

export const USAGE = `usage: bun examples/a2a-agent/agent.ts [--name NAME] [--description TEXT] [--skills FILE] [--port N]
  --name NAME         the agent's name in its card (env AGENT_NAME; default data-analyst)
  --description TEXT  its description (env AGENT_DESCRIPTION)
  --skills FILE       a JSON skills file, e.g. examples/a2a-agent/agents/code-reviewer.json (env AGENT_SKILLS_FILE)
  --port N            the Pilot port to serve on, 1-65535 (env PORT; default 80)
  STEP_MS             pause between a task's progress updates, in ms (default 150)
The daemon is the one of $PILOT_HOME (default ~/.pilot).`;

/** Settings from argv (without the runtime and script) and the environment. Throws UsageError; `help` when --help was asked. */
export function agentSettings(argv: readonly string[], env: Record<string, string | undefined>): AgentSettings | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        name: { type: "string" },
        description: { type: "string" },
        skills: { type: "string" },
        port: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]!.replace(/\.? To specify a positional argument.*$/, ""));
  }
  if (values.help) return "help";
  const pick = (option: string, variable: string): { value: string; from: string } | undefined => {
    const o = values[option];
    if (typeof o === "string") return { value: o, from: `--${option}` };
    const v = env[variable];
    return v === undefined || v === "" ? undefined : { value: v, from: variable };
  };

  const skillsPath = pick("skills", "AGENT_SKILLS_FILE");
  const file = skillsPath ? readSkillsFile(skillsPath.value, skillsPath.from) : undefined;
  const name = pick("name", "AGENT_NAME");
  const description = pick("description", "AGENT_DESCRIPTION");
  const agentName = name ? checkText(name.value, name.from, MAX_NAME) : (file?.name ?? DEFAULT_PROFILE.name);
  const profile: AgentProfile = {
    name: agentName,
    // The tutorial's description belongs to the data-analyst only.
    description: description
      ? checkText(description.value, description.from, MAX_TEXT)
      : (file?.description ?? (agentName === DEFAULT_PROFILE.name ? DEFAULT_PROFILE.description : `${agentName}: an A2A agent over Pilot`)),
    version: file?.version ?? DEFAULT_PROFILE.version,
    skills: file?.skills ?? DEFAULT_PROFILE.skills,
  };
  const port = pick("port", "PORT");
  const stepMs = env.STEP_MS === undefined || env.STEP_MS === "" ? DEFAULT_STEP_MS : integer(env.STEP_MS, "STEP_MS", 0, 60_000, "a pause in milliseconds");
  return {
    profile,
    port: port ? integer(port.value, port.from, 1, 65535, "a Pilot port") : DEFAULT_PORT,
    stepMs,
    ...(skillsPath ? { skillsFile: skillsPath.value } : {}),
  };
}

function integer(text: string, from: string, min: number, max: number, what: string): number {
  const n = /^[0-9]{1,6}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${from} ${JSON.stringify(text)} is not ${what} (${min}-${max})`);
  return n;
}

function checkText(text: string, from: string, max: number): string {
  const t = text.trim();
  if (t === "") throw new UsageError(`${from} is empty`);
  if (t.length > max) throw new UsageError(`${from} is longer than ${max} characters`);
  if (/[\u0000-\u001f\u007f]/.test(t)) throw new UsageError(`${from} contains control characters`);
  return t;
}

export interface SkillsFile {
  name?: string;
  description?: string;
  version?: string;
  skills: Skill[];
}

/** Reads and checks a skills file; every problem is a UsageError that names the file. */
export function readSkillsFile(path: string, from = "--skills"): SkillsFile {
  let text: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new UsageError(`${from} ${path} is not a file`);
    if (st.size > SKILLS_FILE_MAX_BYTES) throw new UsageError(`${from} ${path} is larger than ${SKILLS_FILE_MAX_BYTES / 1024} KiB`);
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const e = error as NodeJS.ErrnoException;
    throw new UsageError(`${from} ${path}: ${e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : e.message}`);
  }
  return parseSkillsFile(text, `${from} ${path}`);
}

/** Parses the text of a skills file; `source` names it in errors. */
export function parseSkillsFile(text: string, source: string): SkillsFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${source} is not JSON: ${(error as Error).message}`);
  }
  const fail = (what: string): never => {
    throw new UsageError(`${source}: ${what}`);
  };
  const top: Record<string, unknown> = Array.isArray(json) ? { skills: json } : isObject(json) ? json : fail("expected a list of skills or an object with \"skills\"");
  for (const key of Object.keys(top)) if (!["name", "description", "version", "skills"].includes(key)) fail(`unknown field "${key}" (expected name, description, version, skills)`);
  const str = (value: unknown, where: string, max: number, optional: boolean): string | undefined => {
    if (value === undefined && optional) return undefined;
    if (typeof value !== "string") return fail(`${where} must be a string`);
    const t = value.trim();
    if (t === "" && !optional) fail(`${where} is empty`);
    if (t.length > max) fail(`${where} is longer than ${max} characters`);
    if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(t)) fail(`${where} contains control characters`);
    return t;
  };
  const list = (value: unknown, where: string): string[] => {
    if (value === undefined) return [];
    if (!Array.isArray(value)) return fail(`${where} must be a list of strings`);
    if (value.length > MAX_LIST) fail(`${where} has more than ${MAX_LIST} entries`);
    return value.map((v, i) => str(v, `${where}[${i}]`, MAX_TEXT, false)!);
  };
  if (!Array.isArray(top.skills)) fail("\"skills\" must be a list");
  const raw = top.skills as unknown[];
  if (raw.length === 0) fail("\"skills\" is empty: an agent needs at least one skill");
  if (raw.length > MAX_SKILLS) fail(`more than ${MAX_SKILLS} skills`);
  const ids = new Set<string>();
  const skills = raw.map((entry, i) => {
    const where = `skills[${i}]`;
    if (!isObject(entry)) return fail(`${where} must be an object`);
    const known = ["id", "name", "description", "tags", "examples", "keywords", "steps", "done", "report"];
    for (const key of Object.keys(entry)) if (!known.includes(key)) fail(`${where}: unknown field "${key}" (expected ${known.join(", ")})`);
    const id = str(entry.id, `${where}.id`, MAX_NAME, false)!;
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) fail(`${where}.id "${id}" may hold only letters, digits, ".", "_" and "-"`);
    if (ids.has(id)) fail(`${where}.id "${id}" appears twice`);
    ids.add(id);
    const steps = entry.steps === undefined ? undefined : list(entry.steps, `${where}.steps`);
    const spec: SkillSpec = {
      id,
      name: str(entry.name, `${where}.name`, MAX_NAME * 2, false)!,
      description: str(entry.description, `${where}.description`, MAX_TEXT, false)!,
      tags: list(entry.tags, `${where}.tags`),
      examples: list(entry.examples, `${where}.examples`),
      keywords: list(entry.keywords, `${where}.keywords`),
      ...(steps ? { steps } : {}),
      ...(entry.done !== undefined ? { done: str(entry.done, `${where}.done`, MAX_TEXT, false)! } : {}),
      ...(entry.report !== undefined ? { report: str(entry.report, `${where}.report`, MAX_TEXT * 4, false)! } : {}),
    };
    return skillFromSpec(spec);
  });
  const name = str(top.name, "name", MAX_NAME, true);
  const description = str(top.description, "description", MAX_TEXT, true);
  const version = str(top.version, "version", MAX_NAME, true);
  return { ...(name ? { name } : {}), ...(description !== undefined ? { description } : {}), ...(version ? { version } : {}), skills };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
