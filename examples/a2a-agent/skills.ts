/**
 * What the data-analyst agent can do, apart from A2A and Pilot: two skills,
 * each a few named steps (reported as the task's progress) and a function
 * from the request text to a report.
 *
 * The sentiment report is the tutorial's fixed sample, so every run of the
 * walkthrough prints the same line; put a real model behind `run` to make
 * it analyse anything. The data summary is computed from the numbers it is
 * given.
 */
import type { AgentSkill } from "@a2a-js/sdk";

export interface Skill {
  /** How the skill appears in the Agent Card. */
  readonly card: AgentSkill;
  /** Progress messages, one per step, streamed as TASK_STATE_WORKING updates. */
  readonly steps: readonly string[];
  /** The report for a request. */
  run(text: string): string;
}

/** The tutorial's report. */
export const SENTIMENT_REPORT = "Sentiment: 73% positive, 18% neutral, 9% negative";

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
  run: summarize,
};

export const SKILLS: readonly Skill[] = [sentimentAnalysis, dataSummary];

/**
 * The skill a request asks for: the one whose id the client put in the
 * message metadata (`{"skill": "data-summary"}`), else data-summary when
 * the text asks to summarize, else sentiment analysis.
 */
export function pickSkill(text: string, metadata: Record<string, unknown> | undefined): Skill {
  const asked = metadata?.skill;
  const byId = SKILLS.find((s) => s.card.id === asked);
  if (byId) return byId;
  return /\bsummar(y|ize|ise)\b/i.test(text) ? dataSummary : sentimentAnalysis;
}

/** Count, min, max, mean and sum of the numbers in `text`. */
export function summarize(text: string): string {
  const numbers = (text.match(/-?\d+(?:\.\d+)?/g) ?? []).map(Number).filter(Number.isFinite);
  if (numbers.length === 0) return "Summary: no numbers found in the data";
  const sum = numbers.reduce((a, b) => a + b, 0);
  const round = (n: number) => Math.round(n * 100) / 100;
  return `Summary: count ${numbers.length}, min ${Math.min(...numbers)}, max ${Math.max(...numbers)}, mean ${round(sum / numbers.length)}, sum ${round(sum)}`;
}
