/**
 * The official A2A SDK client (`ClientFactory` from @a2a-js/sdk/client)
 * calling the data-analyst agent: read its card, send a task, get it back,
 * then send one more and stream its progress.
 *
 *   bun examples/a2a-agent/client.ts data-analyst ["text to analyse"]   # over Pilot, as the agent of $PILOT_HOME
 *   bun examples/a2a-agent/client.ts http://10.4.0.1 ["text"]             # any URL, e.g. a gateway's local IP: plain fetch
 *
 * Over Pilot the SDK is given `pilot.fetch` as its fetch: a standard fetch
 * whose connections go through the local daemon, so the SDK itself is used
 * unchanged. With a URL it uses the global fetch and needs no daemon.
 * Exit 0 when every step worked, 1 otherwise.
 */
import { Role, TaskState, type Message, type Part, type Task } from "@a2a-js/sdk";
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from "@a2a-js/sdk/client";
import type { Driver } from "pilot/driver";
import { connectToDaemon, urlHost } from "../common.ts";

export function userMessage(text: string): Message {
  const part: Part = { content: { $case: "text", value: text }, mediaType: "text/plain", filename: "", metadata: undefined };
  return { messageId: crypto.randomUUID(), role: Role.ROLE_USER, parts: [part], contextId: "", taskId: "", metadata: undefined, extensions: [], referenceTaskIds: [] };
}

/** A ClientFactory whose HTTP goes through `fetchImpl` (the global fetch when undefined), v0.3 agents included. */
export function clientFactory(fetchImpl?: typeof fetch): ClientFactory {
  const legacyCompat = { enabled: true };
  return new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl, legacyCompat })],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl, legacyCompat }),
    }),
  );
}

/** `driver.fetch` as the standard fetch type. */
export function pilotFetchImpl(driver: Driver): typeof fetch {
  return Object.assign((input: string | URL | Request, init?: RequestInit) => driver.fetch(input, init), { preconnect: () => {} }) as typeof fetch;
}

const stateName = (state: TaskState | undefined) => (state === undefined ? "?" : (TaskState[state] ?? String(state)));
const textOf = (parts: Part[] | undefined) => (parts ?? []).map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");
const report = (task: Task) => task.artifacts.map((a) => `${a.name}: ${textOf(a.parts)}`).join("; ");

if (import.meta.main) {
  const [target, text = "Analyze the sentiment of these customer reviews"] = process.argv.slice(2);
  if (!target) {
    console.error('usage: bun examples/a2a-agent/client.ts TARGET|URL ["text"]');
    process.exit(2);
  }
  const viaUrl = /^https?:\/\//.test(target);
  const pilot = viaUrl ? null : await connectToDaemon();
  const base = viaUrl ? target : `http://${urlHost(target)}`;
  const signal = () => AbortSignal.timeout(30_000);
  try {
    const fetchImpl = pilot ? pilotFetchImpl(pilot) : undefined;
    const card = await new DefaultAgentCardResolver({ fetchImpl, legacyCompat: { enabled: true } }).resolve(base);
    const client = await clientFactory(fetchImpl).createFromAgentCard(card);
    const endpoint = card.supportedInterfaces[0]?.url ?? "?";
    console.log(`card:   ${card.name} ${card.version} at ${endpoint} (${client.transport.protocolName} ${client.transport.protocolVersion})`);
    console.log(`skills: ${card.skills.map((s) => `${s.name} (${s.id})`).join(", ")}`);

    const sent = await client.sendMessage({ tenant: "", message: userMessage(text), configuration: undefined, metadata: undefined }, { signal: signal() });
    if (!("status" in sent)) throw new Error(`the agent answered with a message, not a task: ${textOf(sent.parts)}`);
    console.log(`send:   task ${sent.id} ${stateName(sent.status?.state)}: ${report(sent)}`);
    const got = await client.getTask({ id: sent.id, tenant: "", historyLength: undefined }, { signal: signal() });
    console.log(`get:    task ${got.id} ${stateName(got.status?.state)}`);

    const started = performance.now();
    let last: TaskState | undefined;
    const stream = client.sendMessageStream({ tenant: "", message: userMessage(text), configuration: undefined, metadata: undefined }, { signal: signal() });
    for await (const event of stream) {
      const at = `+${Math.round(performance.now() - started)} ms`.padStart(8);
      const p = event.payload;
      if (p?.$case === "task") console.log(`stream: ${at} task ${p.value.id} ${stateName((last = p.value.status?.state))}`);
      else if (p?.$case === "statusUpdate") console.log(`stream: ${at} status ${stateName((last = p.value.status?.state))} ${textOf(p.value.status?.message?.parts)}`);
      else if (p?.$case === "artifactUpdate") console.log(`stream: ${at} artifact ${p.value.artifact?.name}: ${textOf(p.value.artifact?.parts)}`);
      else if (p?.$case === "message") console.log(`stream: ${at} message ${textOf(p.value.parts)}`);
    }
    const ok = sent.status?.state === TaskState.TASK_STATE_COMPLETED && got.status?.state === TaskState.TASK_STATE_COMPLETED && last === TaskState.TASK_STATE_COMPLETED;
    console.log(ok ? "all A2A calls succeeded" : "a task did not complete");
    await pilot?.close();
    process.exit(ok ? 0 : 1);
  } catch (error) {
    const e = error as Error & { hint?: string };
    console.error(`a2a-client: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ""}`);
    await pilot?.close();
    process.exit(1);
  }
}
