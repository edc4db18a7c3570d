/**
 * What an agent can do, apart from A2A and Pilot: skills, each a few named
 * steps (reported as the task's progress) and a function from the request
 * text to a report.
 *
 * Two are built in, the tutorial's data-analyst skills. The sentiment report
 * is the tutorial's fixed sample, so every run of the walkthrough prints the
 * same line; put a real model behind `run` to make it analyse anything. The
 * data summary is computed from the numbers it is given.
 *
 * A skills file (profile.ts) adds skills of its own: a card, optional
 * keywords that select it, and a report template, `{input}` standing for
 * the request's text. Such a skill does no work of its own; it shows how an
 * agent's card and answers are wired, and is where a real one plugs in.
 */
import type { AgentSkill } from "@a2a-js/sdk";

export interface Skill {
  /** How the skill appears in the Agent Card. */
  readonly card: AgentSkill;
  /** Progress messages, one per step, streamed as TASK_STATE_WORKING updates. */
  readonly steps: readonly string[];
  /** The message of the task's final (completed) status. */
  readonly done: string;
  /** Whether a request's text asks for this skill (the first skill is the default). */
  readonly matches?: (text: string) => boolean;
  /** The report for a request. */
  run(text: string): string;
}

/** The tutorial's report. */
export const SENTIMENT_REPORT = "Sentiment: 73% positive, 18% neutral, 9% negative";
/** The tutorial's final status message. */
export const ANALYSIS_COMPLETE = "Analysis complete";

export const sentimentAnalysis: Skill = {
  card: {
    id: "sentiment-analysis",
    name: "Sentiment Analysis",
    description: "Analyze sentiment of text data and produce reports",
    tags: ["nlp", "analysis", "sentiment"],
    examples: ["Analyze the sentiment of these customer reviews"],
    inputModes: ["text/plain"],
    outputModes: ["text/plain"],
    securityRequirements: [],
  },
  steps: ["Reading the text", "Scoring sentiment", "Writing the report"],
  done: ANALYSIS_COMPLETE,
  run: () => SENTIMENT_REPORT,
};

export const dataSummary: Skill = {
  card: {
    id: "data-summary",
    name: "Data Summarization",
    description: "Produce statistical summaries of tabular data",
    tags: ["statistics", "summary", "csv"],
    examples: ["Summarize: 12, 15, 9, 20"],
    inputModes: ["text/plain"],
    outputModes: ["text/plain"],
    securityRequirements: [],
  },
  steps: ["Parsing the data", "Computing statistics"],
  done: ANALYSIS_COMPLETE,
  matches: (text) => /\bsummar(y|ize|ise)\b/i.test(text),
  run: summarize,
};

/** The data-analyst's skills, the default. */
export const SKILLS: readonly Skill[] = [sentimentAnalysis, dataSummary];

/** Skills with behaviour of their own, by id: a skills file that names one without a `report` gets this one's. */
export const BUILT_IN_SKILLS: ReadonlyMap<string, Skill> = new Map(SKILLS.map((s) => [s.card.id, s]));

/**
 * The skill a request asks for: the one whose id the client put in the
 * message metadata (`{"skill": "data-summary"}`), else the first whose
 * keywords the text contains (data-summary: "summary", "summarize"), else
 * the first skill.
 */
export function pickSkill(text: string, metadata: Record<string, unknown> | undefined, skills: readonly Skill[] = SKILLS): Skill {
  const asked = metadata?.skill;
  const byId = skills.find((s) => s.card.id === asked);
  if (byId) return byId;
  return skills.find((s) => s.matches?.(text)) ?? skills[0]!;
}

/** Count, min, max, mean and sum of the numbers in `text`. */
export function summarize(text: string): string {
  const numbers = (text.match(/-?\d+(?:\.\d+)?/g) ?? []).map(Number).filter(Number.isFinite);
  if (numbers.length === 0) return "Summary: no numbers found in the data";
  const sum = numbers.reduce((a, b) => a + b, 0);
  const round = (n: number) => Math.round(n * 100) / 100;
  return `Summary: count ${numbers.length}, min ${Math.min(...numbers)}, max ${Math.max(...numbers)}, mean ${round(sum / numbers.length)}, sum ${round(sum)}`;
}

/** What a skills file may say about a skill (profile.ts validates it). */
export interface SkillSpec {
  id: string;
  name: string;
  description: string;
  tags: string[];
  examples: string[];
  keywords: string[];
  steps?: string[];
  done?: string;
  report?: string;
}

/** Longest `{input}` a templated report repeats, in characters. */
export const REPORT_INPUT_MAX = 2000;

/**
 * A skill from a skills file. One that names a built-in skill's id and has
 * no `report` keeps the built-in's behaviour (its card may be reworded);
 * any other answers with its `report` template.
 */
export function skillFromSpec(spec: SkillSpec): Skill {
  const card: AgentSkill = {
    id: spec.id,
    name: spec.name,
    description: spec.description,
    tags: spec.tags,
    examples: spec.examples,
    inputModes: ["text/plain"],
    outputModes: ["text/plain"],
    securityRequirements: [],
  };
  const words = spec.keywords.map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const keywords = words.length === 0 ? undefined : new RegExp(`\\b(?:${words.join("|")})\\b`, "i");
  const builtIn = spec.report === undefined ? BUILT_IN_SKILLS.get(spec.id) : undefined;
  const template = spec.report ?? `${spec.name}: done`;
  return {
    card,
    steps: spec.steps ?? builtIn?.steps ?? ["Working"],
    done: spec.done ?? builtIn?.done ?? "Task complete",
    matches: keywords ? (text) => keywords.test(text) : builtIn?.matches,
    run: builtIn ? builtIn.run : (text) => template.replaceAll("{input}", clip(text.trim(), REPORT_INPUT_MAX)),
  };
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
