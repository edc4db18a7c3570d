/**
 * `pilot events`: what happened on this node (trust requests, messages,
 * files, peers coming and going). Without --follow it prints the events the
 * daemon keeps and exits; with --follow it streams them as they happen, one
 * line each (with --json one envelope per event), like `pilot recv`.
 */
import type { CommandSpec } from "../command.ts";
import type { Driver, LocalEvent } from "../../driver/index.ts";
import { CliError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { badValue, countOption, durationOption, intOption } from "../args.ts";
import { ms } from "../format.ts";
import { isEventFilter, MAX_EVENT_FILTERS } from "../../shared/events.ts";

const DEFAULT_LIMIT = 100;

interface WebhookStatus {
  url: string;
  queued: number;
  delivered: number;
  failed: number;
  dropped: number;
  last_error: string | null;
}

function typesOption(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const raw = (Array.isArray(value) ? value : [value]).flatMap((v) => (v === true ? [""] : String(v).split(",")));
  const types = raw.map((t) => t.trim());
  for (const t of types) {
    if (!isEventFilter(t)) throw badValue(`--type "${t}" is not an event type or prefix`, "for example: --type trust.request, --type peer (every peer.* type), or --type '*'");
  }
  if (types.length > MAX_EVENT_FILTERS) throw badValue(`at most ${MAX_EVENT_FILTERS} --type values`);
  return types;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** One event as a line for people. */
export function renderEvent(e: LocalEvent): string {
  const d = e.data as Record<string, unknown>;
  const who = (x: Record<string, unknown>) => `${str(x.address)}${typeof x.hostname === "string" ? ` (${x.hostname})` : ""}`;
  let text: string;
  switch (e.type) {
    case "trust.request":
      text = `${who(d)} asks for trust: ${JSON.stringify(d.reason ?? "")}   approve with: pilot approve ${d.node_id}`;
      break;
    case "trust.approved":
      text = `trust with ${who(d)} established`;
      break;
    case "trust.rejected":
      text = `${who(d)} rejected our trust request${d.reason ? `: ${str(d.reason)}` : ""}`;
      break;
    case "trust.revoked":
      text = `${who(d)} ended trust`;
      break;
    case "peer.online":
      text = `${who(d)} is online (${str(d.path)}${d.endpoint ? ` via ${str(d.endpoint)}` : ""})`;
      break;
    case "peer.offline":
      text = `${who(d)} is offline (${d.reason === "untrusted" ? "trust ended" : "unreachable"})`;
      break;
    case "events.gap":
      return `#${e.seq} -- ${d.dropped} event${d.dropped === 1 ? "" : "s"} missed (seq ${d.first_seq}-${d.last_seq}): ${d.reason === "not_kept" ? "no longer kept by the daemon" : "not read fast enough"} --`;
    default:
      text = Object.entries(d)
        .map(([k, v]) => `${k}=${str(v)}`)
        .join(" ");
  }
  return `#${e.seq} ${new Date(e.time).toISOString()} ${e.type}  ${text}`;
}

function renderWebhook(w: WebhookStatus | null): string[] {
  if (!w) return [];
  return [`webhook ${w.url}: ${w.delivered} delivered, ${w.failed} failed, ${w.dropped} dropped, ${w.queued} queued${w.last_error ? ` (last error: ${w.last_error})` : ""}`];
}

async function webhookStatus(d: Driver): Promise<WebhookStatus | null> {
  try {
    const s = (await d.call("events_status")) as { webhook?: WebhookStatus | null };
    return s.webhook ?? null;
  } catch {
    return null;
  }
}

export const eventsCommand: CommandSpec = {
  name: "events",
  description: "Show what happened on this node (trust requests, messages, files, peers online/offline); --follow streams it",
  options: [
    { flags: "--follow", description: "stream events as they happen (one line each; with --json one envelope per event) until Ctrl-C" },
    { flags: "--type <type>", description: "only this type or prefix (repeatable, or comma-separated): trust.request, peer, message, ..." },
    { flags: "--since <seq>", description: "events after this seq (the daemon keeps its last 1000); with --follow, replayed before the live ones" },
    { flags: "--limit <n>", description: `without --follow: at most the newest N (default ${DEFAULT_LIMIT})` },
    { flags: "--count <n>", description: "with --follow: stop after N events" },
    { flags: "--timeout <duration>", description: "with --follow: stop after this long (with --count: fail if fewer came)" },
  ],
  examples: [
    "pilot events                                   # what the daemon kept, newest last",
    "pilot events --follow                          # live, until Ctrl-C",
    "pilot events --follow --type trust.request --count 1 --timeout 5m --json   # wait for one trust request",
    "pilot events --follow --since 120              # resume after the last seq you saw",
  ],
  returns: {
    events: "[{seq, time (ms since epoch), type, data}] oldest first (without --follow; with it each event is its own envelope)",
    last_seq: "the newest event's seq",
    oldest_seq: "the oldest event still kept (null: none)",
    boot: "random per daemon run: seqs from another run mean nothing",
    webhook: "the webhook's counters {url, delivered, failed, dropped, queued, ...}, or null without one",
  },
  errors: ["invalid_argument", "timeout", "not_running"],
  async run({ out }, _args, o) {
    const types = typesOption(o.type);
    const since = intOption(o.since, "--since", 0, Number.MAX_SAFE_INTEGER, 0);
    const limit = countOption(o.limit, "--limit", 1000);
    const count = countOption(o.count, "--count");
    const timeoutMs = durationOption(o.timeout, "--timeout");
    if (!o.follow) {
      if (count !== undefined || timeoutMs !== undefined) throw badValue("--count and --timeout go with --follow", "for example: pilot events --follow --count 1 --timeout 30s");
      const r = await withDaemon(async (d) => ({ ...(await d.recentEvents({ types, since, limit: limit ?? DEFAULT_LIMIT })), webhook: await webhookStatus(d) }));
      out.result(r, (x: typeof r) =>
        [
          ...(x.events.length === 0 ? [`no events${since !== undefined ? ` after seq ${since}` : ""}${types ? ` of type ${types.join(", ")}` : ""} (last seq ${x.last_seq})`] : x.events.map(renderEvent)),
          ...renderWebhook(x.webhook),
        ].join("\n"),
      );
      return;
    }
    if (limit !== undefined) throw badValue("--limit goes without --follow (with it, use --count)", "for example: pilot events --limit 20");
    await withDaemon(async (d) => {
      const stream = d.events({ types, since });
      await stream.ready;
      out.progress(`following events${types ? ` of type ${types.join(", ")}` : ""} after seq ${since ?? stream.lastSeq}${count ? ` (${count})` : " (Ctrl-C to stop)"}`);
      let seen = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let timedOut = false;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          timedOut = true;
          void stream.close();
        }, timeoutMs);
      }
      try {
        for await (const event of stream) {
          out.result(event, renderEvent);
          if (event.type !== "events.gap") seen++;
          if (count !== undefined && seen >= count) break;
        }
      } finally {
        clearTimeout(timer);
        await stream.close();
      }
      if (timedOut && count !== undefined && seen < count) {
        throw new CliError("timeout", `${seen} of ${count} event${count === 1 ? "" : "s"} within ${ms(timeoutMs!)}`, "raise --timeout, or check the --type filter");
      }
      if (timedOut) out.progress(`stopped after ${ms(timeoutMs!)}: ${seen} event${seen === 1 ? "" : "s"}`);
    });
  },
};
