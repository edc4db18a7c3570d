/**
 * examples/http-server.ts and examples/http-client.ts, run for real: the
 * server as agent-a's user, the client as agent-b's, after agent-b asked for
 * and agent-a granted trust. A third daemon, "stranger", trusts no one.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Cluster } from "../support/cluster.ts";
import { runExample, useTwoAgents } from "./support.ts";

const agents = useTwoAgents();
let c: Cluster;
beforeAll(() => {
  c = agents.cluster;
});

describe("http-server + http-client", () => {
  test("the client calls the server three ways (raw stream, node:http agent, fetch) by hostname, address and node id", async () => {
    const a = c.daemon("a");
    const b = c.daemon("b");
    const server = runExample("http-server.ts", a);
    try {
      const ready = await server.waitFor(/HTTP server listening on pilot port 80 \((\S+)\)/);
      expect(ready[1]).toBe(a.address);

      for (const target of ["agent-a", a.address, String(a.nodeId)]) {
        const client = runExample("http-client.ts", b, { args: [target] });
        const code = await client.exitCode();
        if (code !== 0) throw new Error(`http-client ${target} exited ${code}:\n${client.output}`);
        const out = client.stdout;
        expect(out).toContain(`this agent is ${b.address}`);
        expect(out).toContain(`[1/3] raw stream: dial(${JSON.stringify(target)}, 80)`);
        expect(out).toContain("[2/3] node:http + pilot.httpAgent(): GET http://");
        expect(out).toContain("[3/3] pilot.fetch: POST http://");
        expect(out.match(/Status: 200 /g)?.length).toBe(3);
        const status = JSON.stringify({ status: "healthy", agent: a.address, version: "1.0.0" });
        expect(out.split(`Body:   ${status}`).length - 1).toBe(2);
        expect(out).toMatch(/Body: {3}\{"message":"hello over pilot","from":"[^"]+","sent_at":"[^"]+"\}/);
        expect(out).toContain("all three calls succeeded; the echo matched what was sent");
        expect(client.stderr).toBe("");
      }

      // The server saw every request come from agent-b's Pilot address, nobody else's.
      await server.waitFor(/(POST \/api\/echo from .*\n[^]*){3}/);
      const seen = server.stdout.split("\n").filter((l) => l.startsWith("http-server: "));
      expect(seen.filter((l) => l.includes("GET /api/status from ")).length).toBe(6);
      expect(seen.filter((l) => l.includes("POST /api/echo from ")).length).toBe(3);
      for (const line of seen) expect(line).toMatch(new RegExp(`from ${b.address.replace(/\./g, "\\.")}:\\d+ -> 200 `));
    } finally {
      expect(await server.stop("SIGTERM")).toBe(0);
    }
    expect(server.stdout).toContain("http-server: SIGTERM received, shutting down");
  });

  test("the server answers 404 for unknown paths and 400 for an echo without a JSON body; fetch.ts calls it", async () => {
    const server = runExample("http-server.ts", c.daemon("a"));
    const { connect } = await import("../../src/driver/index.ts");
    const b = await connect({ home: c.daemon("b").home });
    try {
      await server.waitFor(/listening on pilot port 80/);
      const missing = await b.fetch("http://agent-a/nope");
      expect(missing.status).toBe(404);
      expect(await missing.json()).toEqual({ error: "not found" });
      const bad = await b.fetch("http://agent-a/api/echo", { method: "POST", body: "not json" });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toEqual({ error: "send a JSON body" });
      const nested = { a: [1, 2, { b: null }], ünï: "cödé", n: 1.5 };
      const echo = await b.fetch("http://agent-a/api/echo", { method: "POST", body: JSON.stringify(nested) });
      expect(echo.headers.get("content-type")).toBe("application/json");
      expect(await echo.json()).toEqual(nested);

      // examples/fetch.ts: body on stdout, status on stderr.
      const get = runExample("fetch.ts", c.daemon("b"), { args: ["http://agent-a/api/status"] });
      expect(await get.exitCode()).toBe(0);
      expect(JSON.parse(get.stdout)).toEqual({ status: "healthy", agent: c.daemon("a").address, version: "1.0.0" });
      expect(get.stderr).toMatch(/^HTTP 200 OK \([\d.]+ ms\)\n$/);
      const post = runExample("fetch.ts", c.daemon("b"), { args: [`http://${c.daemon("a").address.slice(2)}/api/echo`, '{"hello":"pilot"}'] });
      expect(await post.exitCode()).toBe(0);
      expect(post.stdout).toBe('{"hello":"pilot"}\n');
    } finally {
      await b.close();
      // SIGINT (Ctrl-C) stops it as cleanly as SIGTERM, and port 80 is free again afterwards.
      expect(await server.stop("SIGINT")).toBe(0);
    }
    expect(server.stdout).toContain("http-server: SIGINT received, shutting down");
  });

  test("an agent without trust cannot even find the server: exit 1 with the reason and a hint", async () => {
    const server = runExample("http-server.ts", c.daemon("a"));
    try {
      await server.waitFor(/listening on pilot port 80/);
      const client = runExample("http-client.ts", c.daemon("stranger"), { args: ["agent-a"] });
      expect(await client.exitCode()).toBe(1);
      expect(client.stderr).toContain("http-client: raw stream: no such node");
      expect(client.stderr).toContain('hint: agent-a does not exist, or it is private and has not trusted you: ask for trust with: pilot handshake agent-a "why"');
      expect(server.stdout).not.toContain(" from ");
    } finally {
      await server.stop();
    }
  });

  test("a second http-server on the same agent: port 80 is taken, one error line and its hint, exit 1, no stack trace", async () => {
    const first = runExample("http-server.ts", c.daemon("a"));
    try {
      await first.waitFor(/listening on pilot port 80/);
      const second = runExample("http-server.ts", c.daemon("a"));
      expect(await second.exitCode()).toBe(1);
      expect(second.stdout).toBe("");
      expect(second.stderr).toBe("error: port 80 is already in use\nhint: pick another port, or stop the program that listens on it\n");
      // The first one is unharmed.
      const fetched = runExample("fetch.ts", c.daemon("b"), { args: ["http://agent-a/api/status"] });
      expect(await fetched.exitCode()).toBe(0);
    } finally {
      await first.stop();
    }
  });

  test("fetch.ts with an address spelt as in the CLI: the error shows the URL spelling that works", async () => {
    const a = c.daemon("a");
    const fetcher = runExample("fetch.ts", c.daemon("b"), { args: [`http://${a.address}/api/status`] });
    expect(await fetcher.exitCode()).toBe(1);
    const dashed = a.address.replace(":", "-").replaceAll(".", "-").toLowerCase();
    expect(fetcher.stderr).toContain(`error: "http://${a.address}/api/status": in a URL the ":" of a Pilot address starts the port\n`);
    expect(fetcher.stderr).toContain(`hint: write the address with dashes: http://${dashed}/api/status, or by node id: http://${a.nodeId}/api/status`);
    expect(fetcher.stderr).not.toMatch(/^\s+at /m);
  });

  test("without a running daemon, the examples say so and exit 1; without a target, the clients print their usage", async () => {
    const home = mkdtempSync(join(tmpdir(), "pilot-nodaemon-"));
    try {
      const server = runExample("http-server.ts", null, { env: { PILOT_HOME: home } });
      expect(await server.exitCode()).toBe(1);
      expect(server.stderr).toMatch(/^error: .*\nhint: .*pilot daemon start/m);
      const client = runExample("http-client.ts", null, { env: { PILOT_HOME: home } });
      expect(await client.exitCode()).toBe(2);
      expect(client.stderr).toContain("usage: bun examples/http-client.ts TARGET");
      const fetcher = runExample("fetch.ts", null, { env: { PILOT_HOME: home }, args: ["https://agent-a/"] });
      expect(await fetcher.exitCode()).toBe(2);
      expect(fetcher.stderr).toContain("usage: bun examples/fetch.ts http://HOST[:PORT]/PATH [JSON_BODY]");
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
