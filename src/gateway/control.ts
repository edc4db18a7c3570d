/**
 * The control channel of a running gateway: a unix socket,
 * `$PILOT_HOME/gateway/gateway.sock` (mode 0600, in a 0700 directory), that
 * speaks one JSON object per line each way:
 *
 *   -> {"id":1,"op":"map","target":"data-analyst","ports":[80]}
 *   <- {"id":1,"ok":true,"data":{...}}   or   {"id":1,"ok":false,"error":{"code","message","hint"}}
 *
 * Operations: `status`, `map {target, ports, ip?, secure?}`, `unmap {target, ports?}`, `stop`.
 *
 * Versions: replies to `status` and `map` carry `control_version`. Version 2
 * (per-port secure) added `secure_ports` to each mapping and `ports` to
 * `unmap`; a gateway without `control_version` is version 1, which would
 * ignore `ports` and remove the whole mapping, so the CLI does not send it
 * `unmap` with ports. Fields are only ever added.
 * Under sudo the directory and socket belong to the user who owns
 * PILOT_HOME, so `pilot gateway list|map|unmap|stop` work without sudo.
 */
import net from "node:net";
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { MAX_SOCKET_PATH_BYTES } from "../ipc/paths.ts";
import { GatewayError, asGatewayError } from "./errors.ts";

export const CONTROL_SOCKET = "gateway.sock";
/** The version of this protocol that this gateway speaks (see above). */
export const CONTROL_VERSION = 2;
export const LEDGER_FILE = "state.json";
export const LOG_FILE = "gateway.log";

export function controlSocketPath(gatewayDir: string): string {
  return join(gatewayDir, CONTROL_SOCKET);
}

/** Longest request line accepted. */
const MAX_LINE = 64 * 1024;

export type ControlHandler = (op: string, params: Record<string, unknown>) => Promise<unknown>;

export function notRunningError(): GatewayError {
  return new GatewayError("not_running", "no gateway is running", "start one with: sudo pilot gateway start --ports 80 <agent>   (or without sudo: --subnet 127.77.0.0/16)");
}

/** Serves the control socket. Refuses to start if another gateway answers on it. */
export async function serveControl(path: string, handler: ControlHandler): Promise<net.Server> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new GatewayError("invalid_argument", `the gateway's control socket path is too long for a unix socket: ${path}`, "use a shorter PILOT_HOME");
  }
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) throw new GatewayError("invalid_argument", `${path} exists and is not a socket`, "move it out of the way");
    const other = await probe(path);
    if (other) throw new GatewayError("already_exists", `a gateway is already running (pid ${other.pid})`, "add mappings to it with: pilot gateway start|map <agent>, or stop it with: pilot gateway stop");
    unlinkSync(path); // left by a gateway that died
  }
  const server = net.createServer((socket) => serveConnection(socket, handler));
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.removeListener("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(previous);
  }
  // Mode 0600 comes from the umask above; a chmod here could follow a symlink someone swapped in.
  return server;
}

function serveConnection(socket: net.Socket, handler: ControlHandler): void {
  let buffered = "";
  socket.setEncoding("utf8");
  socket.on("error", () => {});
  socket.on("data", (text: string) => {
    buffered += text;
    if (buffered.length > MAX_LINE && !buffered.includes("\n")) {
      socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() !== "") void answer(socket, line, handler);
    }
  });
}

async function answer(socket: net.Socket, line: string, handler: ControlHandler): Promise<void> {
  let id: unknown = null;
  let reply: Record<string, unknown>;
  try {
    const request = JSON.parse(line);
    id = request?.id ?? null;
    if (!request || typeof request.op !== "string") throw new GatewayError("invalid_argument", "a request needs an op");
    const params = request.params && typeof request.params === "object" ? request.params : {};
    reply = { id, ok: true, data: await handler(request.op, params) };
  } catch (e) {
    reply = { id, ok: false, error: asGatewayError(e).toJSON() };
  }
  if (!socket.destroyed) socket.write(JSON.stringify(reply) + "\n");
}

/** Sends one request to the gateway at `path`; NotRunning if none answers. */
export async function controlRequest(path: string, op: string, params: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    let buffered = "";
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const timer = setTimeout(() => done(() => reject(new GatewayError("timeout", `the gateway did not answer "${op}" within ${timeoutMs / 1000} s`, "see its log: $PILOT_HOME/gateway/gateway.log"))), timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(JSON.stringify({ id: 1, op, params }) + "\n"));
    socket.on("data", (text: string) => {
      buffered += text;
      const nl = buffered.indexOf("\n");
      if (nl < 0) return;
      done(() => {
        try {
          const reply = JSON.parse(buffered.slice(0, nl));
          if (reply.ok) resolve(reply.data);
          else reject(new GatewayError(reply.error?.code ?? "internal", reply.error?.message ?? "the gateway failed", reply.error?.hint));
        } catch {
          reject(new GatewayError("internal", "the gateway sent a malformed answer"));
        }
      });
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      done(() => {
        if (e.code === "ENOENT" || e.code === "ECONNREFUSED" || e.code === "ENOTSOCK") reject(notRunningError());
        else if (e.code === "EACCES" || e.code === "EPERM") reject(new GatewayError("unauthorized", `no permission to use the gateway's control socket ${path}`, "run the command as the user who owns PILOT_HOME, or with sudo"));
        else reject(new GatewayError("internal", `cannot reach the gateway at ${path}: ${e.message}`));
      });
    });
    socket.on("close", () => done(() => reject(new GatewayError("internal", "the gateway closed the control connection without answering"))));
  });
}

/** The running gateway's status, or null if none answers. */
export async function probe(path: string, timeoutMs = 2000): Promise<{ pid: number; subnet: string } | null> {
  try {
    return await controlRequest(path, "status", {}, timeoutMs);
  } catch (e) {
    if (e instanceof GatewayError && (e.code === "not_running" || e.code === "timeout" || e.code === "internal")) return null;
    throw e;
  }
}
