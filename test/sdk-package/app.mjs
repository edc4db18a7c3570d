// An app that uses the packed SDK as a user would: plain JavaScript, `import "pilot-sdk"`,
// run unchanged by Node 20, Node 22 and Bun (test/sdk-package/sdk-package.test.ts copies it
// into a folder where the tarball is installed). Two drivers, one per daemon: B serves,
// A calls through Pilot. Prints one JSON line with what it saw; the test checks it.
//
//   PILOT_APP_HOME_A, PILOT_APP_HOME_B   the two daemons' PILOT_HOMEs
//   PILOT_APP_PEER                       B's hostname, as A names it
import http from "node:http";
import { createHash } from "node:crypto";
import express from "express";
import { connect, NodeError } from "pilot-sdk";

const peer = process.env.PILOT_APP_PEER;
const a = await connect({ home: process.env.PILOT_APP_HOME_A });
const b = await connect({ home: process.env.PILOT_APP_HOME_B });
const out = {
  runtime: typeof Bun !== "undefined" ? "bun" : "node",
  version: typeof Bun !== "undefined" ? Bun.version : process.versions.node,
};

// node:http on Pilot port 80.
const plain = await b.serveHttp(80, (req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ server: "node:http", method: req.method, url: req.url, from: req.socket.remoteAddress }));
});

// express on Pilot port 8080: JSON in and out, and a 1 MiB upload hashed on the server.
const app = express();
app.post("/echo", express.json(), (req, res) => res.json({ server: "express", got: req.body }));
app.get("/hello/:name", (req, res) => res.json({ server: "express", hello: req.params.name }));
app.post("/sha256", (req, res) => {
  const hash = createHash("sha256");
  let bytes = 0;
  req.on("data", (chunk) => {
    bytes += chunk.length;
    hash.update(chunk);
  });
  req.on("end", () => res.json({ bytes, sha256: hash.digest("hex") }));
});
const routes = await b.serveHttp(8080, app);

// The secure channel (port 443): node:http over it, fetched with https:.
const secure = await b.serveHttp(443, (req, res) => res.end(`secret for ${req.socket.remoteAddress}`), { secure: true });

// 1. fetch through Pilot to node:http.
const r1 = await a.fetch(`http://${peer}/status?x=1`);
out.plain = { status: r1.status, type: r1.headers.get("content-type"), body: await r1.json() };

// 2. fetch through Pilot to express, with a JSON body.
const r2 = await a.fetch(`http://${peer}:8080/echo`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ n: 42, list: [1, 2, 3] }),
});
out.express = { status: r2.status, body: await r2.json() };

// 3. http.get with the SDK's agent, to express.
out.agent = await new Promise((resolve, reject) => {
  const agent = a.httpAgent();
  http
    .get(`http://${peer}:8080/hello/world`, { agent }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => {
        agent.destroy();
        resolve({ status: res.statusCode, body: JSON.parse(text) });
      });
    })
    .on("error", reject);
});

// 4. A 1 MiB upload through fetch, hashed on both ends.
const upload = new Uint8Array(1 << 20);
for (let i = 0; i < upload.length; i++) upload[i] = (i * 7919) & 0xff;
const r4 = await a.fetch(`http://${peer}:8080/sha256`, { method: "POST", body: upload });
out.upload = { status: r4.status, body: await r4.json(), expected: createHash("sha256").update(upload).digest("hex") };

// 5. https: is the secure channel.
const r5 = await a.fetch(`https://${peer}/`);
out.secure = { status: r5.status, body: await r5.text() };

// 6. A port nobody serves: a NodeError with a code, not a hang.
try {
  await a.dial(peer, 9999, { timeoutMs: 5000 });
  out.refused = { error: null };
} catch (error) {
  out.refused = { isNodeError: error instanceof NodeError, code: error.code };
}

// 7. Datagrams: B binds a port, A sends one, B answers to its source port.
const dgB = await b.bindDatagrams(5000);
dgB.on("message", (d) => void dgB.send(d.from, d.fromPort, `pong ${new TextDecoder().decode(d.data)}`));
const dgA = await a.bindDatagrams(5001);
const pong = new Promise((resolve) => dgA.once("message", (d) => resolve({ from: d.from, fromPort: d.fromPort, text: new TextDecoder().decode(d.data) })));
await a.sendTo(peer, 5000, "ping", { fromPort: 5001 });
out.datagram = await pong;
await dgA.close();
await dgB.close();

// 8. A message, seen by B as a local event and in its inbox; typed trust calls.
const seen = new Promise((resolve) => b.once("message.received", (e) => resolve({ type: e.type, from: e.data.from, kind: e.data.type })));
const sent = await a.sendMessage(peer, { hello: out.runtime }, { waitMs: 10_000 });
out.message = { state: sent.state, stored: sent.stored, event: await seen, text: (await b.inbox.read(sent.id)).json() };
out.trusted = (await a.trusted()).trusted.map((t) => t.address);

out.addresses = { a: a.address, b: b.address };
await plain.close();
await routes.close();
await secure.close();
await a.close();
await b.close();
process.stdout.write(JSON.stringify(out) + "\n");
// No process.exit: the process must end by itself once the drivers are closed.
