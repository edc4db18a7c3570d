/**
 * Calls the HTTP server of `http-server.ts` on another agent, three ways.
 *
 *   bun examples/http-client.ts TARGET
 *
 * TARGET is the server agent's hostname (`agent-a`), address
 * (`0:0000.0000.0001`) or node id (`1`). That agent must trust this one.
 *
 * 1. A raw Pilot stream (`dial`) with an HTTP/1.1 request written by hand:
 *    the socket is an ordinary Duplex, so HTTP is just bytes on it.
 * 2. `node:http` with the SDK's `httpAgent()`: any code that takes an
 *    `http.Agent` now talks over Pilot.
 * 3. `fetch` through Pilot, here a POST with a JSON body to /api/echo.
 */
import http from "node:http";
import type { Driver } from "pilot/driver";
import { connectToDaemon, parseResponse, urlHost, type RawReply } from "./common.ts";

const PORT = 80;

/** 1. Dial port 80, write the request by hand, read the response until the server closes. */
async function rawRequest(pilot: Driver, target: string, host: string): Promise<RawReply> {
  const socket = await pilot.dial(target, PORT);
  socket.write(`GET /api/status HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return parseResponse(Buffer.concat(chunks).toString("utf8"));
}

/** 2. An ordinary node:http request; the agent resolves the host through Pilot and dials port 80. */
function agentRequest(agent: http.Agent, host: string): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port: PORT, path: "/api/status", agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

/** 3. fetch over Pilot: POST a JSON body to /api/echo. */
async function fetchEcho(pilot: Driver, host: string, payload: unknown): Promise<RawReply> {
  const res = await pilot.fetch(`http://${host}/api/echo`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  return { status: res.status, body: await res.text() };
}

async function timed<T>(label: string, run: () => Promise<T>): Promise<T & { ms: number }> {
  const started = performance.now();
  try {
    const value = await run();
    return { ...value, ms: performance.now() - started };
  } catch (error) {
    throw new Error(`${label}: ${(error as Error).message}`, { cause: error });
  }
}

function show(n: number, title: string, reply: RawReply & { ms: number }): void {
  console.log(`[${n}/3] ${title}`);
  console.log(`      Status: ${reply.status} (${reply.ms.toFixed(1)} ms)`);
  console.log(`      Body:   ${reply.body.trim()}`);
}

if (import.meta.main) {
  const target = process.argv[2];
  if (!target || target.startsWith("-")) {
    console.error("usage: bun examples/http-client.ts TARGET   (hostname, address or node id of the agent running http-server.ts)");
    process.exit(2);
  }
  const pilot = await connectToDaemon();
  const agent = pilot.httpAgent();
  const host = urlHost(target);
  let interrupted = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      interrupted = true;
      console.log(`http-client: ${signal} received, stopping`);
      agent.destroy();
      void pilot.close().finally(() => process.exit(0));
    });
  }
  console.log(`http-client: this agent is ${pilot.address}; calling ${target} on pilot port ${PORT}`);
  let failed = false;
  try {
    const raw = await timed("raw stream", () => rawRequest(pilot, target, host));
    show(1, `raw stream: dial(${JSON.stringify(target)}, ${PORT}) + hand-written GET /api/status`, raw);

    const viaAgent = await timed("node:http", () => agentRequest(agent, host));
    show(2, `node:http + pilot.httpAgent(): GET http://${host}/api/status`, viaAgent);

    const payload = { message: "hello over pilot", from: pilot.address, sent_at: new Date().toISOString() };
    const echoed = await timed("fetch", () => fetchEcho(pilot, host, payload));
    show(3, `pilot.fetch: POST http://${host}/api/echo`, echoed);

    const ok = [raw, viaAgent, echoed].every((r) => r.status === 200) && JSON.stringify(JSON.parse(echoed.body)) === JSON.stringify(payload);
    if (!ok) {
      failed = true;
      console.error("http-client: unexpected answer (see above)");
    } else {
      console.log("http-client: all three calls succeeded; the echo matched what was sent");
    }
  } catch (error) {
    if (interrupted) process.exit(0);
    failed = true;
    const e = error as Error & { cause?: { hint?: string } };
    console.error(`http-client: ${e.message}`);
    if (e.cause?.hint) console.error(`hint: ${e.cause.hint}`);
  }
  agent.destroy();
  await pilot.close();
  process.exit(failed ? 1 : 0);
}
