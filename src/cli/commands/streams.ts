/**
 * Streams from the command line: `connect` opens one to a node's port (a
 * message and its reply, or stdin/stdout like netcat), `recv` accepts them on
 * a port and prints each connection's data as one message.
 */
import type { CommandSpec } from "../command.ts";
import type { Driver, PilotServer, PilotSocket } from "../../driver/index.ts";
import { CliError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { durationOption, portArg, targetArg, textOption } from "../args.ts";
import { asCliError, deadline, readToEnd } from "../sockets.ts";
import { ms, nodeLabel } from "../format.ts";
import { chomp, collectMessages, messageOptions, renderBatch, renderMessage } from "../messages.ts";

const DEFAULT_PORT = 1000;
/** Largest message `connect` and `recv` hold in memory. */
const MAX_MESSAGE = 16 * 1024 * 1024;

async function dial(d: Driver, target: string, address: string, port: number, timeoutMs: number): Promise<PilotSocket> {
  try {
    return await d.dial(address, port, { timeoutMs });
  } catch (e) {
    const err = asCliError(e);
    if (err.code === "connection_refused") throw new CliError(err.code, `nothing listens on port ${port} of ${/^[0-9]+$/.test(target) ? `node ${target}` : target}`, `start a listener there, e.g. on that node: pilot recv ${port}`);
    if (err.code === "timeout") throw new CliError(err.code, `no connection to ${target} port ${port} within ${ms(timeoutMs)}`, `check that it is reachable: pilot ping ${target}`);
    throw err;
  }
}

export const connectCommand: CommandSpec = {
  name: "connect",
  args: "<target> [port]",
  description: "Open a stream to a node's port: send --message and print the reply, or pipe stdin and stdout through it like netcat",
  options: [
    { flags: "--message <text>", description: "send TEXT, finish sending, and print what comes back until the peer closes" },
    { flags: "--timeout <duration>", description: "limit for connecting and, with --message, for the reply (default 30s)" },
  ],
  examples: [
    'pilot connect agent-b 1000 --message "hello"     # one message, then the reply',
    "echo hello | pilot connect agent-b 7            # netcat-style (port 7 echoes)",
    "pilot connect agent-b 80 < request.txt > reply.txt",
  ],
  returns: {
    target: "the node's address",
    port: "the port connected to",
    sent: "bytes sent",
    received: "bytes of the reply",
    response: "the reply as UTF-8 text (with --message, or --json with the message on stdin)",
  },
  errors: ["not_found", "connection_refused", "connection_reset", "not_trusted", "unreachable", "timeout", "closed", "invalid_argument", "limit_exceeded", "not_running", "registry_unavailable"],
  async run({ out }, [text, portText], o) {
    const target = targetArg(text);
    const port = portText === undefined ? DEFAULT_PORT : portArg(portText);
    const timeout = durationOption(o.timeout, "--timeout") ?? 30_000;
    let message = textOption(o, "message");
    if (message === undefined && out.json) {
      if (process.stdin.isTTY) throw new CliError("invalid_argument", "with --json, give the message with --message TEXT or on stdin", `for example: pilot connect ${text} ${port} --message "hello" --json`);
      message = await Bun.stdin.text();
    }
    await withDaemon(async (d) => {
      const address = await d.resolve(target);
      const socket = await dial(d, text!, address, port, timeout);
      if (message === undefined) return pipeStdio(socket, out.progress.bind(out), `${nodeLabel(address, target.includes(":") ? null : target)} port ${port}`);
      try {
        const bytes = Buffer.from(message);
        const reply = readToEnd(socket, MAX_MESSAGE);
        socket.end(bytes);
        const r = await deadline(reply, timeout, `no complete reply from ${text} port ${port} within ${ms(timeout)}`, "the peer must close the connection to end its reply; raise --timeout if it is slow");
        if (r.error) throw r.error;
        const data = { target: address, port, sent: bytes.length, received: r.data.length, response: r.data.toString("utf8") };
        if (data.received === 0) out.progress(`sent ${data.sent} bytes to ${text} port ${port}; the peer closed without a reply`);
        out.result(data, (x) => chomp(x.response));
      } finally {
        socket.destroy();
      }
    });
  },
};

/** stdin -> stream (half-closed at EOF), stream -> stdout, until the peer closes. */
async function pipeStdio(socket: PilotSocket, progress: (m: string) => void, label: string): Promise<void> {
  const stdin = process.stdin;
  if (stdin.isTTY) progress(`connected to ${label}: type to send, Ctrl-D to finish sending, Ctrl-C to quit`);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", (e) => reject(asCliError(e)));
      socket.on("data", (chunk: Buffer) => {
        if (!process.stdout.write(chunk)) {
          socket.pause();
          process.stdout.once("drain", () => socket.resume());
        }
      });
      let ended = false;
      socket.once("end", () => {
        ended = true;
        resolve();
      });
      // Closed without the peer finishing: reset here (pilot disconnect) or the daemon went away.
      socket.once("close", () => (ended ? resolve() : reject(new CliError("closed", `the connection to ${label} was closed before the peer finished`, "see whether it was reset here (pilot disconnect) or the daemon stopped (pilot daemon status)"))));
      stdin.pipe(socket);
    });
    await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  } finally {
    stdin.unpipe(socket);
    stdin.destroy();
    socket.destroy();
  }
}

export const recvCommand: CommandSpec = {
  name: "recv",
  args: "<port>",
  description: "Accept stream connections on a port and print each one's data (until the sender finishes) as a message",
  options: [
    { flags: "--count <n>", description: "stop after N messages and print them together; without it, print each as it arrives until Ctrl-C" },
    { flags: "--timeout <duration>", description: "stop waiting after this long (default: no limit)" },
  ],
  examples: ["pilot recv 1000 --count 1     # then, on another node: pilot connect THIS-NODE 1000 --message hi", "pilot recv 1000 --json        # one JSON line per message, until Ctrl-C"],
  returns: {
    port: "the port listened on (with --count)",
    messages: "[{seq, port, src_addr, src_port, data (UTF-8 text), bytes, error?}] (with --count; without it, each message is its own envelope)",
    timeout: "true if --timeout ended the wait before --count messages arrived",
  },
  errors: ["port_in_use", "invalid_argument", "not_running"],
  async run({ out }, [portText], o) {
    const port = portArg(portText);
    const { count, timeoutMs } = messageOptions(o);
    await withDaemon(async (d) => {
      let server: PilotServer;
      try {
        server = await d.listen(port);
      } catch (e) {
        const err = asCliError(e);
        if (err.code === "port_in_use") throw new CliError(err.code, `port ${port} is already in use on this node`, "stop the program that listens there, or pick another port");
        throw err;
      }
      out.progress(`listening on port ${port} for stream connections${count ? ` (${count} message${count === 1 ? "" : "s"})` : " (Ctrl-C to stop)"}`);
      const result = await collectMessages(
        (push) => {
          const open = new Set<PilotSocket>();
          server.on("connection", async (socket: PilotSocket) => {
            open.add(socket);
            const from = { src_addr: socket.remoteAddress ?? "", src_port: socket.remotePort ?? 0 };
            const r = await readToEnd(socket, MAX_MESSAGE);
            socket.end();
            open.delete(socket);
            push({ port, ...from, data: r.data.toString("utf8"), bytes: r.data.length, ...(r.error ? { error: r.error.code, message: r.error.message } : {}) });
          });
          return () => {
            server.close().catch(() => {});
            for (const s of open) s.destroy();
          };
        },
        { count, timeoutMs, emit: count === undefined ? (m) => out.result(m, renderMessage) : undefined },
      );
      if (count !== undefined) out.result({ port, ...result }, renderBatch("message", count));
      else if (result.timeout) out.progress(`stopped after ${ms(timeoutMs!)}: ${result.messages.length} message${result.messages.length === 1 ? "" : "s"} received`);
    });
  },
};
