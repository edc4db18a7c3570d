/**
 * The opt-in health endpoint: `pilot rendezvous --health-addr HOST:PORT`
 * answers GET /healthz with 200 while the registry's store answers, 503 once
 * it does not (its PostgreSQL server stopped), 404 for anything else.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { SCHEMA_VERSION } from "../../../src/registry/store.ts";
import { startRendezvous, stopAll, tempDir } from "../helpers.ts";
import { postgresAvailable, startPostgres, type PostgresCluster } from "./postgres-cluster.ts";

const withPostgres = postgresAvailable();
let cluster: PostgresCluster | undefined;

afterAll(async () => {
  await stopAll();
  await cluster?.stop();
});

test("SQLite: /healthz is 200 with the store's kind and nothing about nodes; other paths are 404", async () => {
  const r = await startRendezvous({ store: join(tempDir(), "registry.db"), args: ["--health-addr", "127.0.0.1:0"] });
  expect(r.health).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/healthz$/);
  const ok = await fetch(r.health!);
  expect(ok.status).toBe(200);
  const body = (await ok.json()) as Record<string, unknown>;
  expect(body).toMatchObject({ status: "ok", store: "sqlite", schema_version: SCHEMA_VERSION });
  expect(Object.keys(body).sort()).toEqual(["schema_version", "status", "store", "uptime_s"]);
  expect((await fetch(r.health!.replace("/healthz", "/nodes"))).status).toBe(404);
  expect((await fetch(r.health!, { method: "POST" })).status).toBe(404);
});

test.skipIf(!withPostgres)("PostgreSQL: 200 while the database answers, 503 once it is gone", async () => {
  cluster = await startPostgres();
  const r = await startRendezvous({ store: await cluster.createDatabase(), args: ["--health-addr", "127.0.0.1:0"] });
  expect((await fetch(r.health!)).status).toBe(200);
  await cluster.stop();
  cluster = undefined;
  const down = await fetch(r.health!);
  expect(down.status).toBe(503);
  expect((await down.json()) as object).toMatchObject({ status: "unavailable", store: "postgres" });
}, 60_000);
