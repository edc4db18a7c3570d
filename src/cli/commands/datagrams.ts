/**
 * Datagrams from the command line: `send` one to a node's port, `listen` for
 * them on a port. Like UDP: no connection, no delivery guarantee, and a
 * datagram to a port nobody listens on is dropped.
 */
import type { CommandSpec } from "../command.ts";
import type { DatagramSocket } from "../../driver/index.ts";
import { CliError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { portArg, requireText, targetArg } from "../args.ts";
import { asCliError } from "../sockets.ts";
import { ms, nodeLabel } from "../format.ts";
import { collectMessages, messageOptions, renderBatch, renderMessage } from "../messages.ts";

export const sendCommand: CommandSpec = {
  name: "send",
  args: "<target> <port>",
  description: "Send one datagram to a node's port (unreliable, like UDP: nothing confirms delivery)",
  options: [{ flags: "--data <text>", description: "the datagram's content (required; at most about 1 kB)" }],
  examples: ['pilot send agent-b 1000 --data "hello"     # on agent-b: pilot listen 1000'],
  returns: { target: "the node's address", port: "the destination port", bytes: "bytes sent" },
  errors: ["not_found", "not_trusted", "unreachable", "invalid_argument", "not_running", "registry_unavailable"],
  async run({ out }, [text, portText], o) {
    const target = targetArg(text);
    const port = portArg(portText);
    const data = Buffer.from(requireText(o, "data", `pilot send ${text} ${port} --data "hello"`));
    const r = await withDaemon(async (d) => {
      const address = await d.resolve(target);
      await d.sendTo(address, port, data);
      return { target: address, port, bytes: data.length };
    });
    out.result(r, (x) => `sent ${x.bytes} bytes to ${nodeLabel(x.target, target.includes(":") ? null : target)} port ${x.port} (one datagram; delivery is not confirmed)`);
  },
};

export const listenCommand: CommandSpec = {
  name: "listen",
  args: "<port>",
  description: "Receive datagrams on a port and print each one",
  options: [
    { flags: "--count <n>", description: "stop after N datagrams and print them together; without it, print each as it arrives until Ctrl-C" },
    { flags: "--timeout <duration>", description: "stop waiting after this long (default: no limit)" },
  ],
  examples: ["pilot listen 1000                # then, on another node: pilot send THIS-NODE 1000 --data hi", "pilot listen 1000 --count 5 --timeout 10s --json"],
  returns: {
    port: "the port listened on (with --count)",
    messages: "[{seq, port, src_addr, src_port, data (UTF-8 text), bytes}] (with --count; without it, each datagram is its own envelope)",
    timeout: "true if --timeout ended the wait before --count datagrams arrived",
  },
  errors: ["port_in_use", "invalid_argument", "not_running"],
  async run({ out }, [portText], o) {
    const port = portArg(portText);
    const { count, timeoutMs } = messageOptions(o);
    await withDaemon(async (d) => {
      let socket: DatagramSocket;
      try {
        socket = await d.bindDatagrams(port);
      } catch (e) {
        const err = asCliError(e);
        if (err.code === "port_in_use") throw new CliError(err.code, `datagram port ${port} is already bound on this node`, "stop the program that listens there, or pick another port");
        throw err;
      }
      out.progress(`listening on port ${port} for datagrams${count ? ` (${count})` : " (Ctrl-C to stop)"}`);
      const result = await collectMessages(
        (push) => {
          socket.on("message", (m) => push({ port, src_addr: m.from, src_port: m.fromPort, data: Buffer.from(m.data).toString("utf8"), bytes: m.data.length }));
          return () => {
            socket.close().catch(() => {});
          };
        },
        { count, timeoutMs, emit: count === undefined ? (m) => out.result(m, renderMessage) : undefined },
      );
      if (count !== undefined) out.result({ port, ...result }, renderBatch("datagram", count));
      else if (result.timeout) out.progress(`stopped after ${ms(timeoutMs!)}: ${result.messages.length} datagram${result.messages.length === 1 ? "" : "s"} received`);
    });
  },
};
