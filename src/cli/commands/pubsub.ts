/**
 * Pub/sub from the command line, through a broker (any node that runs the
 * pub/sub service, port 1002): `subscribe` prints events as they arrive,
 * `publish` sends one and reports the broker's ack, `topics` shows what this
 * node's own broker holds. Delivery is at-most-once to the subscribers
 * connected at the time; nothing is stored.
 */
import type { CommandSpec } from "../command.ts";
import type { PubsubEvent } from "../../driver/index.ts";
import { CliError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { badValue, countOption, durationOption, targetArg, textOption } from "../args.ts";
import { asCliError } from "../sockets.ts";
import { bytes, isoTime, ms, table } from "../format.ts";
import { chomp } from "../messages.ts";
import { parsePattern, parseTopic } from "../../protocol/topic.ts";
import { MAX_EVENT_LIMIT } from "../../protocol/pubsub.ts";
import { usageError } from "../errors.ts";

const TOPIC_HINT = "topics are dot-separated words (sensors.kitchen.temp); subscriptions may use * for one word and > (or #) for the rest: sensors.*.temp, sensors.>";

function topicArg(text: string | undefined, pattern: boolean): string {
  if (text === undefined || text === "") throw usageError("a topic is required", TOPIC_HINT);
  const r = pattern ? parsePattern(text) : parseTopic(text);
  if (!r.ok) throw badValue(r.error.message, TOPIC_HINT);
  return text;
}

/** One event as `subscribe` prints it (one envelope per event in JSON mode). */
function eventData(e: PubsubEvent) {
  return { topic: e.topic, data: new TextDecoder().decode(e.data), from: e.from, time: isoTime(e.time), seq: e.seq, bytes: e.data.length };
}

function renderEvent(e: ReturnType<typeof eventData>): string {
  return `[${e.topic} from ${e.from}] ${chomp(e.data)}`;
}

export const subscribeCommand: CommandSpec = {
  name: "subscribe",
  args: "<target> <topic>",
  description: "Receive the events of a topic from a node's pub/sub broker (port 1002) and print each as it arrives",
  options: [
    { flags: "--count <n>", description: "exit after N events (default: until Ctrl-C)" },
    { flags: "--timeout <duration>", description: "stop after this long; with --count, fewer than N events by then is a timeout error" },
  ],
  examples: [
    'pilot subscribe agent-a "sensors.>"                  # every topic under sensors.; then: pilot publish agent-a sensors.kitchen.temp --data 21.5',
    'pilot subscribe agent-a "sensors.*.temp" --count 1 --json',
    "pilot subscribe agent-a 'alerts.#' --timeout 1m",
  ],
  returns: {
    topic: "the event's topic (each event is its own envelope, printed as it arrives)",
    data: "the event's data as UTF-8 text",
    from: "the publisher's address, as the broker authenticated it",
    time: "when the broker accepted the event (ISO 8601, the broker's clock)",
    seq: "the broker's number for the event (increasing, shared by all topics)",
    bytes: "size of the data",
  },
  errors: ["not_found", "not_trusted", "connection_refused", "limit_exceeded", "unreachable", "timeout", "closed", "invalid_argument", "not_running", "registry_unavailable"],
  async run({ out }, [text, topicText], o) {
    const target = targetArg(text);
    const topic = topicArg(topicText, true);
    const count = countOption(o.count, "--count");
    const timeoutMs = durationOption(o.timeout, "--timeout");
    await withDaemon(async (d) => {
      const sub = d.subscribe(target, topic);
      let timedOut = false;
      const timer = timeoutMs !== undefined ? setTimeout(() => ((timedOut = true), void sub.close()), timeoutMs) : undefined;
      let received = 0;
      try {
        await sub.ready;
        out.progress(`subscribed to ${topic} on ${text}${sub.broker && sub.broker !== text ? ` (${sub.broker})` : ""}${count ? ` (${count} event${count === 1 ? "" : "s"})` : " (Ctrl-C to stop)"}`);
        for await (const event of sub) {
          out.result(eventData(event), renderEvent);
          if (count !== undefined && ++received >= count) break;
        }
      } catch (e) {
        if (!timedOut) throw asCliError(e);
      } finally {
        clearTimeout(timer);
        await sub.close();
      }
      if (timedOut) {
        if (count !== undefined && received < count) throw new CliError("timeout", `timed out after ${ms(timeoutMs!)}: ${received} of ${count} event${count === 1 ? "" : "s"} received`, "raise --timeout, or check that something publishes to the topic");
        out.progress(`stopped after ${ms(timeoutMs!)}: ${received} event${received === 1 ? "" : "s"} received`);
      }
    });
  },
};

/** stdin, at most `max` bytes (more is an error before anything is sent). */
async function readStdin(max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of Bun.stdin.stream()) {
    size += chunk.length;
    if (size > max) throw new CliError("limit_exceeded", `stdin holds more than ${bytes(max)}, more than any broker accepts in one event`, "publish smaller events (a broker takes at most its pubsub_max_event, 64KiB by default)");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

export const publishCommand: CommandSpec = {
  name: "publish",
  args: "<target> <topic> [-]",
  description: "Publish one event on a topic of a node's pub/sub broker (port 1002); its current subscribers get it",
  options: [{ flags: "--data <text>", description: "the event's data (or give - to read it from stdin)" }],
  examples: ['pilot publish agent-a sensors.kitchen.temp --data "21.5"', "date | pilot publish agent-a clock.tick -", "pilot publish agent-a jobs.done --data '{\"id\":7}' --json"],
  returns: {
    target: "the broker's address",
    topic: "the topic published to",
    bytes: "size of the data",
    delivered: "subscriber connections the broker queued the event for (0: nobody subscribed; events are not stored)",
    seq: "the broker's number for the event",
  },
  errors: ["not_found", "not_trusted", "connection_refused", "limit_exceeded", "rate_limited", "unreachable", "timeout", "closed", "invalid_argument", "usage", "not_running", "registry_unavailable"],
  async run({ out }, [text, topicText, extra], o) {
    const target = targetArg(text);
    const topic = topicArg(topicText, false);
    const dataText = textOption(o, "data");
    if (extra !== undefined && extra !== "-") throw usageError(`unexpected argument "${extra}"`, `give the data with --data TEXT, or - to read it from stdin: pilot publish ${text} ${topic} -`);
    // The option parser does not hand "-" over as an argument: look for it as typed.
    const end = process.argv.indexOf("--");
    const dash = (end < 0 ? process.argv : process.argv.slice(0, end)).slice(2).includes("-") ? "-" : undefined;
    if (dash === "-" && dataText !== undefined) throw usageError("give the data with --data or on stdin (-), not both", `for example: pilot publish ${text} ${topic} --data "hello"`);
    if (dash === undefined && dataText === undefined) throw usageError("the event's data is required", `for example: pilot publish ${text} ${topic} --data "hello"   (or - to read stdin)`);
    const data = dataText !== undefined ? new TextEncoder().encode(dataText) : await readStdin(MAX_EVENT_LIMIT);
    const r = await withDaemon(async (d) => {
      const publisher = await d.publisher(target).catch((e) => {
        throw asCliError(e);
      });
      try {
        return await publisher.publish(topic, data);
      } catch (e) {
        throw asCliError(e);
      } finally {
        await publisher.close();
      }
    });
    out.result(r, (x) => `published ${x.bytes} bytes on ${x.topic} to the broker on ${text}: ${x.delivered === 0 ? "no subscriber had it (events are not stored)" : `queued for ${x.delivered} subscriber${x.delivered === 1 ? "" : "s"}`} (seq ${x.seq})`);
  },
};

export const topicsCommand: CommandSpec = {
  name: "topics",
  description: "Show this node's pub/sub broker: its subscriptions by pattern, clients, counters and limits",
  examples: ["pilot topics", "pilot topics --json"],
  returns: {
    port: "the broker's port (1002)",
    connections: "client streams open",
    subscribers: "connections with at least one subscription",
    subscriptions: "subscriptions in total",
    topics: "[{pattern, subscriptions}]",
    peers: "[{address, connections, subscriptions}]",
    published: "events accepted since the daemon started",
    delivered: "event deliveries queued for subscribers",
    cut: "subscribers cut for falling behind",
    refused: "refusals by reason (rate_limited, too_large, invalid_topic, limit_exceeded, ...)",
    limits: "the broker's bounds (config keys pubsub_*)",
  },
  errors: ["not_found", "not_running"],
  async run({ out }) {
    const status = (await withDaemon(async (d) => {
      try {
        return await d.call("pubsub_status");
      } catch (e) {
        const err = asCliError(e);
        if (err.code === "invalid_argument" || err.code === "not_found") throw new CliError("not_found", "this node does not run the pub/sub broker", "it was started with --no-pubsub (or disabled_services=pubsub)");
        throw err;
      }
    })) as Record<string, any>;
    out.result(status, (s) =>
      [
        `pub/sub broker on port ${s.port}: ${s.connections} connection${s.connections === 1 ? "" : "s"}, ${s.subscriptions} subscription${s.subscriptions === 1 ? "" : "s"}`,
        s.topics.length ? table(["PATTERN", "SUBSCRIPTIONS"], s.topics.map((t: any) => [t.pattern, t.subscriptions]), "  ") : "  no subscriptions",
        `published ${s.published}, delivered ${s.delivered}, subscribers cut ${s.cut}${Object.keys(s.refused).length ? `, refused ${Object.entries(s.refused).map(([k, v]) => `${k} ${v}`).join(", ")}` : ""}`,
        `limits: events up to ${bytes(s.limits.max_event)}, ${bytes(s.limits.queue_bytes)} queued per subscriber, ${s.limits.publish_rate} publishes/s per node`,
      ].join("\n"),
    );
  },
};
