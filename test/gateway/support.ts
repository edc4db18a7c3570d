/**
 * Helpers for the gateway's integration tests: a private 127.x subnet per
 * test run (so parallel runs on one machine do not collide), curl, raw TCP
 * requests, and stopping every gateway a test started, by pid, even when
 * the test failed.
 */
import net from "node:net";
import { alive, runPilot, type RunResult } from "../support/cluster.ts";
export { alive } from "../support/cluster.ts";

export const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;

/** A /24 inside 127.0.0.0/8 that no other test run on this machine uses at the same time. */
export function privateSubnet(second: number): { cidr: string; ip: (n: number) => string } {
  const third = (process.pid % 250) + 1;
  return { cidr: `127.${second}.${third}.0/24`, ip: (n) => `127.${second}.${third}.${n}` };
}

const gateways = new Map<number, Record<string, string>>();

/** Runs `pilot gateway ...` with `env`, remembering the pid of any gateway it reports. */
export async function gw(env: Record<string, string>, args: string[], options: { json?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
  const full = options.json === false ? ["gateway", ...args] : ["gateway", ...args, "--json"];
  const r = await runPilot(full, { env, timeoutMs: options.timeoutMs ?? 30_000 });
  const pid = r.json?.data?.pid;
  if (typeof pid === "number") gateways.set(pid, env);
  return r;
}

/** Stops every gateway started through `gw` (gracefully, then SIGKILL). */
export async function stopGateways(): Promise<void> {
  for (const [pid, env] of gateways) {
    if (alive(pid)) await runPilot(["gateway", "stop", "--json"], { env, timeoutMs: 15_000 }).catch(() => {});
    if (alive(pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
  gateways.clear();
}


process.on("exit", () => {
  for (const pid of gateways.keys()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

export interface CurlResult {
  code: number;
  status: number;
  headers: string;
  body: string;
  stderr: string;
}

/** `curl -sS -i URL` (plus `extra`); status, headers and body split apart. */
export async function curl(url: string, extra: string[] = [], prefix: string[] = []): Promise<CurlResult> {
  const proc = Bun.spawn([...prefix, "curl", "-sS", "-i", "--max-time", "20", ...extra, url], { stdout: "pipe", stderr: "pipe" });
  const [out, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const split = out.indexOf("\r\n\r\n");
  const headers = split >= 0 ? out.slice(0, split) : out;
  const body = split >= 0 ? out.slice(split + 4) : "";
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(headers)?.[1] ?? 0);
  return { code, status, headers, body, stderr };
}

/** Opens a TCP connection (allowHalfOpen) to `host:port`. */
export function tcp(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Everything a socket receives until the peer's FIN (or an error). */
export function readAll(s: net.Socket): Promise<{ data: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    s.once("end", () => resolve({ data: Buffer.concat(chunks) }));
    s.once("error", (e: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), error: e.code ?? e.message }));
  });
}

/** Polls until `check` returns something truthy. */
export async function until<T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}
