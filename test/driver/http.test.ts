import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import http from "node:http";
import type { Driver, PilotSocket, PilotSocketError } from "../../src/driver/index.ts";
import { pattern, startHarness, until, type Harness } from "./harness.ts";

let h: Harness;
let alpha: Driver;
let beta: Driver;

beforeEach(async () => {
  h = await startHarness();
  alpha = await h.a.connect();
  beta = await h.b.connect();
});

afterEach(async () => {
  await h.close();
});

/** The seed tutorial's service: /api/status and /api/echo. */
function tutorialHandler(driver: Driver): http.RequestListener {
  return (req, res) => {
    if (req.url === "/api/status") {
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ status: "healthy", agent: driver.address, version: "1.0.0" }));
      return;
    }
    if (req.url === "/api/echo") {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        res.setHeader("Content-Type", req.headers["content-type"] ?? "application/octet-stream");
        res.end(Buffer.concat(chunks));
      });
      return;
    }
    res.statusCode = 404;
    res.end(JSON.stringify({ error: "not found" }));
  };
}

/** Counts the Pilot connections a served port accepts. */
function countConnections(served: { listener: { on(e: "connection", f: (s: PilotSocket) => void): unknown } }): () => number {
  let n = 0;
  served.listener.on("connection", () => n++);
  return () => n;
}

function get(agent: http.Agent, url: string): Promise<{ status: number; body: string; socketPort: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = "";
        const socketPort = (res.socket as unknown as PilotSocket).localPort!;
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode!, body, socketPort }));
      })
      .on("error", reject);
  });
}

describe("serveHttp + httpAgent", () => {
  test("a client that half-closes right after its request still gets the response (as over TCP)", async () => {
    const served = await alpha.serveHttp(80, tutorialHandler(alpha));
    try {
      const socket = await beta.dial(alpha.address, 80, { allowHalfOpen: true });
      const chunks: Buffer[] = [];
      socket.on("data", (c: Buffer) => chunks.push(c));
      const ended = new Promise((r) => socket.once("end", r));
      // /api/echo answers only after reading the whole body, i.e. after the client's FIN.
      const body = JSON.stringify({ hello: "pilot" });
      socket.end(`POST /api/echo HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await ended;
      const text = Buffer.concat(chunks).toString();
      expect(text).toStartWith("HTTP/1.1 200");
      expect(text).toEndWith(body);
    } finally {
      await served.close();
    }
  });

  test("the tutorial's status endpoint, called with http.get through the agent", async () => {
    await beta.serveHttp(80, tutorialHandler(beta));
    const agent = alpha.httpAgent();
    const r = await get(agent, "http://beta/api/status");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: "healthy", agent: "0:0000.0000.000B", version: "1.0.0" });
    agent.destroy();
  });

  test("keep-alive: sequential requests reuse one Pilot connection", async () => {
    const served = await beta.serveHttp(80, tutorialHandler(beta));
    const connections = countConnections(served);
    const agent = alpha.httpAgent();
    const ports = new Set<number>();
    for (let i = 0; i < 10; i++) {
      const r = await get(agent, "http://beta/api/status");
      expect(r.status).toBe(200);
      ports.add(r.socketPort);
    }
    expect(connections()).toBe(1);
    expect(ports.size).toBe(1);
    agent.destroy();
  });

  test("the server sees the caller's Pilot address as remoteAddress", async () => {
    await beta.serveHttp(80, (req, res) => res.end(`${req.socket.remoteAddress} ${req.headers.host}`));
    const agent = alpha.httpAgent();
    const r = await get(agent, "http://beta/");
    expect(r.body).toBe("0:0000.0000.000A beta");
    agent.destroy();
  });

  test("a non-default Pilot port in the URL, and a full address as host via request options", async () => {
    await beta.serveHttp(8080, (_req, res) => res.end("on 8080"));
    const agent = alpha.httpAgent();
    expect((await get(agent, "http://beta:8080/")).body).toBe("on 8080");
    const body = await new Promise<string>((resolve, reject) => {
      http
        .request({ host: "0:0000.0000.000B", port: 8080, path: "/", agent }, (res) => {
          let b = "";
          res.on("data", (d: Buffer) => (b += d));
          res.on("end", () => resolve(b));
        })
        .on("error", reject)
        .end();
    });
    expect(body).toBe("on 8080");
    agent.destroy();
  });

  test("an express-style app (a plain (req, res, next) function) and an http.Server both serve", async () => {
    // What express hands to http.createServer: a function of (req, res, next).
    const app = (req: http.IncomingMessage, res: http.ServerResponse, next?: (err?: unknown) => void) => {
      const routes: Record<string, () => void> = {
        "/api/users": () => res.end(JSON.stringify([{ id: "u1", name: "Alice" }])),
      };
      const route = routes[req.url ?? ""];
      if (route) return route();
      if (next) return next();
      res.statusCode = 404;
      res.end("no route");
    };
    await beta.serveHttp(80, app);
    const server = http.createServer((_req, res) => res.end("from a server object"));
    await beta.serveHttp(81, server);
    const users = await alpha.fetch("http://beta/api/users");
    expect(await users.json()).toEqual([{ id: "u1", name: "Alice" }]);
    expect((await alpha.fetch("http://beta/nope")).status).toBe(404);
    expect(await (await alpha.fetch("http://beta:81/")).text()).toBe("from a server object");
  });

  test("a connection error reaches the request as an errno-style error", async () => {
    const agent = alpha.httpAgent();
    const error = (await get(agent, "http://beta:9999/").catch((e: unknown) => e)) as PilotSocketError;
    expect(error.code).toBe("ECONNREFUSED");
    const unknown = (await get(agent, "http://nobody/").catch((e: unknown) => e)) as PilotSocketError;
    expect(unknown.code).toBe("ENOTFOUND");
    agent.destroy();
  });

  test("close() unbinds the port and closes idle keep-alive connections", async () => {
    const served = await beta.serveHttp(80, tutorialHandler(beta));
    const agent = alpha.httpAgent();
    expect((await get(agent, "http://beta/api/status")).status).toBe(200);
    expect(h.b.node.streams.size).toBe(1);
    await served.close();
    expect(h.b.node.listeners.has(80)).toBe(false);
    await until(() => h.b.node.streams.size === 0, 2000, "idle connection closed");
    const error = (await get(agent, "http://beta/api/status").catch((e: unknown) => e)) as PilotSocketError;
    expect(error.code).toBe("ECONNREFUSED");
    agent.destroy();
  });

  test("close() lets a request in progress finish", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const served = await beta.serveHttp(80, async (_req, res) => {
      await gate;
      res.end("finished");
    });
    const pending = alpha.fetch("http://beta/slow");
    await until(() => h.b.node.streams.size === 1);
    await Bun.sleep(10);
    const closing = served.close();
    release();
    await closing;
    const res = await pending;
    expect(await res.text()).toBe("finished");
  });
});

describe("driver.fetch", () => {
  test("GET and POST JSON: the tutorial's echo", async () => {
    await beta.serveHttp(80, tutorialHandler(beta));
    const status = await alpha.fetch("http://beta/api/status");
    expect(status.ok).toBe(true);
    expect(status.headers.get("content-type")).toBe("application/json");
    expect(((await status.json()) as { status: string }).status).toBe("healthy");
    const echo = await alpha.fetch("http://beta/api/echo", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task: "summarise", n: 3 }),
    });
    expect(await echo.json()).toEqual({ task: "summarise", n: 3 });
  });

  test("URL forms: node id, address without prefix", async () => {
    await beta.serveHttp(80, tutorialHandler(beta));
    expect((await alpha.fetch("http://11/api/status")).status).toBe(200);
    expect((await alpha.fetch("http://0000.0000.000B/api/status")).status).toBe(200);
  });

  test("a 2 MB body both ways streams intact", async () => {
    await beta.serveHttp(80, tutorialHandler(beta));
    const data = pattern(2 * 1024 * 1024, 3);
    const res = await alpha.fetch("http://beta/api/echo", { method: "POST", body: data });
    const back = new Uint8Array(await res.arrayBuffer());
    expect(back.length).toBe(data.length);
    expect(Buffer.compare(back, data)).toBe(0);
  });

  test("parallel fetches share a small pool and all succeed", async () => {
    const served = await beta.serveHttp(80, tutorialHandler(beta));
    const connections = countConnections(served);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => alpha.fetch("http://beta/api/echo", { method: "POST", body: `n${i}` }).then((r) => r.text())));
    expect(results).toEqual(Array.from({ length: 30 }, (_, i) => `n${i}`));
    expect(connections()).toBeLessThanOrEqual(30);
    // Sequential ones afterwards reuse what is pooled.
    const before = connections();
    for (let i = 0; i < 5; i++) await (await alpha.fetch("http://beta/api/status")).text();
    expect(connections()).toBe(before);
  });

  test("errors: unknown host rejects; other schemes are refused with a reason; https: needs a secure listener", async () => {
    const error = (await alpha.fetch("http://nobody/").catch((e: unknown) => e)) as PilotSocketError;
    expect(error.code).toBe("ENOTFOUND");
    const ftp = (await alpha.fetch("ftp://beta/").catch((e: unknown) => e)) as Error & { code: string };
    expect(ftp.code).toBe("invalid_argument");
    // https: is Pilot's secure channel on port 443 (test/secure covers it); nothing listens there here.
    const https = (await alpha.fetch("https://beta/").catch((e: unknown) => e)) as Error & { code: string };
    expect(https.code).toBe("ECONNREFUSED");
  });

  test("an aborted fetch rejects", async () => {
    await beta.serveHttp(80, () => {});
    const controller = new AbortController();
    const pending = alpha.fetch("http://beta/hang", { signal: controller.signal });
    await until(() => h.b.node.streams.size === 1);
    controller.abort();
    expect(await pending.catch((e: Error) => e.name)).toBe("AbortError");
  });
});

describe("the tutorial's service mesh", () => {
  test("orders enriches an order by calling users over Pilot", async () => {
    const gamma = await (await h.site(12, "orders")).connect();
    const users: Record<string, { id: string; name: string }> = { u1: { id: "u1", name: "Alice" }, u2: { id: "u2", name: "Bob" } };
    await beta.serveHttp(80, (req, res) => {
      const id = (req.url ?? "").slice("/api/users/".length);
      const user = users[id];
      res.statusCode = user ? 200 : 404;
      res.end(JSON.stringify(user ?? { error: "not found" }));
    });
    await gamma.serveHttp(80, async (_req, res) => {
      const order = { id: "o1", user_id: "u1", item: "GPU Cluster Hours", total: 250 };
      const user = await (await gamma.fetch(`http://beta/api/users/${order.user_id}`)).json();
      res.end(JSON.stringify({ order, user }));
    });
    const enriched = await (await alpha.fetch("http://orders/api/orders/o1")).json();
    expect(enriched).toEqual({ order: { id: "o1", user_id: "u1", item: "GPU Cluster Hours", total: 250 }, user: { id: "u1", name: "Alice" } });
  });
});
