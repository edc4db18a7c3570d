/**
 * Messages received by `recv` (one per stream connection) and `listen` (one
 * per datagram): the same fields, the same output. With --count they are
 * collected and printed together; without it each is printed as it arrives
 * (in JSON, one envelope per line).
 */
import { countOption, durationOption } from "./args.ts";

export interface Message {
  seq: number;
  port: number;
  src_addr: string;
  src_port: number;
  data: string;
  bytes: number;
  error?: string;
  message?: string;
}

export function renderMessage(m: Message): string {
  return `[${m.src_addr} port ${m.src_port}] ${chomp(m.data)}${m.error ? `  (${m.error}: ${m.message})` : ""}`;
}

/**
 * Collects messages until `count` arrived or `timeoutMs` passed; with no
 * count, `emit` gets each one as it comes. `source` starts delivering to
 * `push` and returns a function that stops it.
 */
export async function collectMessages(
  source: (push: (m: Omit<Message, "seq">) => void) => () => void,
  options: { count?: number; timeoutMs?: number; emit?: (m: Message) => void },
): Promise<{ messages: Message[]; timeout: boolean }> {
  const messages: Message[] = [];
  let stop: (() => void) | undefined;
  const timedOut = await new Promise<boolean>((resolve) => {
    let done = false;
    const finish = (timeout: boolean) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      resolve(timeout);
    };
    const timer = options.timeoutMs !== undefined ? setTimeout(() => finish(true), options.timeoutMs) : undefined;
    stop = source((m) => {
      if (done) return;
      const message = { seq: messages.length, ...m };
      messages.push(message);
      options.emit?.(message);
      if (options.count !== undefined && messages.length >= options.count) finish(false);
    });
  });
  stop?.();
  return { messages, timeout: timedOut };
}

export function messageOptions(o: Record<string, any>): { count?: number; timeoutMs?: number } {
  return { count: countOption(o.count, "--count"), timeoutMs: durationOption(o.timeout, "--timeout") };
}

export function renderBatch(what: string, count: number | undefined) {
  return (d: { messages: Message[]; timeout: boolean }) => {
    const lines = d.messages.map(renderMessage);
    if (d.timeout) lines.push(`timed out: ${d.messages.length}${count ? ` of ${count}` : ""} ${what}${d.messages.length === 1 ? "" : "s"} received`);
    return lines.join("\n");
  };
}


/** Strips one trailing newline, since the text renderer adds one. */
export function chomp(text: string): string {
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

