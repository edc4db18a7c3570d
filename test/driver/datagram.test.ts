import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Datagram, Driver, NodeError } from "../../src/driver/index.ts";
import { startHarness, until, type Harness } from "./harness.ts";

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

const text = (d: Datagram) => new TextDecoder().decode(d.data);

test("sendTo reaches the socket bound to the port, with sender and ports", async () => {
  const inbox = await beta.bindDatagrams(5000);
  const got: Datagram[] = [];
  inbox.on("message", (d: Datagram) => got.push(d));
  await alpha.sendTo("beta", 5000, "hello");
  await until(() => got.length === 1);
  expect(got[0]!.from).toBe("0:0000.0000.000A");
  expect(got[0]!.port).toBe(5000);
  expect(got[0]!.fromPort).toBeGreaterThanOrEqual(49152);
  expect(text(got[0]!)).toBe("hello");
});

test("async iteration, and replies to the sender's bound port", async () => {
  const server = await beta.bindDatagrams(6000);
  (async () => {
    for await (const d of server) await server.send(d.from, d.fromPort, `re: ${text(d)}`);
  })();
  const client = await alpha.bindDatagrams(0);
  expect(client.port).toBeGreaterThan(0);
  const replies: string[] = [];
  client.on("message", (d: Datagram) => replies.push(text(d)));
  await client.send("beta", 6000, "ping 1");
  await client.send("11", 6000, "ping 2");
  await until(() => replies.length === 2);
  expect(replies.sort()).toEqual(["re: ping 1", "re: ping 2"]);
  await server.close();
});

test("only the client that bound the port receives; other clients of the same daemon do not", async () => {
  const other = await h.b.connect();
  const mine = await beta.bindDatagrams(7000);
  const theirs = await other.bindDatagrams(7001);
  const got: string[] = [];
  const leaked: string[] = [];
  mine.on("message", (d: Datagram) => got.push(text(d)));
  theirs.on("message", (d: Datagram) => leaked.push(text(d)));
  for (let i = 0; i < 10; i++) await alpha.sendTo("beta", 7000, `m${i}`);
  await until(() => got.length === 10);
  await Bun.sleep(20);
  expect(leaked).toEqual([]);
});

test("close() unbinds: the port can be bound again (by another client)", async () => {
  const first = await beta.bindDatagrams(8000);
  const taken = (await (await h.b.connect()).bindDatagrams(8000).catch((e: unknown) => e)) as NodeError;
  expect(taken.code).toBe("port_in_use");
  await first.close();
  expect(h.b.node.datagramPorts.has(8000)).toBe(false);
  const second = await (await h.b.connect()).bindDatagrams(8000);
  expect(second.port).toBe(8000);
});

test("an iterator that is not read drops the oldest beyond its bound", async () => {
  const inbox = await beta.bindDatagrams(9000, { maxQueued: 4 });
  const iterator = inbox[Symbol.asyncIterator]();
  for (let i = 0; i < 10; i++) await alpha.sendTo("beta", 9000, `m${i}`);
  await until(() => inbox.dropped === 6);
  const first = await iterator.next();
  expect(text(first.value as Datagram)).toBe("m6");
  await inbox.close();
  for (let r = await iterator.next(); !r.done; r = await iterator.next());
});

test("errors are the sender's own: too large, a port it did not bind, an unknown node", async () => {
  expect(((await alpha.sendTo("beta", 1, new Uint8Array(4000)).catch((e: unknown) => e)) as NodeError).code).toBe("invalid_argument");
  expect(((await alpha.sendTo("beta", 1, "x", { fromPort: 4242 }).catch((e: unknown) => e)) as NodeError).code).toBe("invalid_argument");
  expect(((await alpha.sendTo("nobody", 1, "x").catch((e: unknown) => e)) as NodeError).code).toBe("not_found");
  // And the driver is fine afterwards.
  expect(await alpha.call("echo", { ok: true })).toEqual({ ok: true });
});
