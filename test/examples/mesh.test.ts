/**
 * The three-service REST mesh (examples/mesh), each service a real process
 * on its own agent, called from a fourth agent, "shop". Trust: shop <-> each
 * service (to call them), and users <-> orders (orders calls users).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Driver } from "../../src/driver/index.ts";
import { fetchUser, orders } from "../../examples/mesh/orders.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { runExample, stopAll, type Spawned } from "./support.ts";

let c: Cluster;
let shop: Driver;
const services = new Map<string, Spawned>();

const ALICE = { id: "u1", name: "Alice", email: "alice@example.com" };
const BOB = { id: "u2", name: "Bob", email: "bob@example.com" };

beforeAll(async () => {
  c = await startCluster({
    daemons: [
      { name: "users", hostname: "users" },
      { name: "orders", hostname: "orders" },
      { name: "inventory", hostname: "inventory" },
      { name: "shop", hostname: "shop" },
    ],
  });
  await c.trust("users", "orders");
  for (const service of ["users", "orders", "inventory"]) await c.trust(service, "shop");
  for (const service of ["users", "orders", "inventory"]) {
    const p = runExample(`mesh/${service}.ts`, c.daemon(service));
    services.set(service, p);
  }
  for (const [service, p] of services) {
    const m = await p.waitFor(new RegExp(`${service} service listening on pilot port 80 \\((\\S+)\\)`));
    expect(m[1]).toBe(c.daemon(service).address);
  }
  shop = await connect({ home: c.daemon("shop").home });
});

afterAll(async () => {
  await shop?.close();
  await stopAll();
  await c?.stop();
});

async function get(url: string): Promise<{ status: number; body: any }> {
  const res = await shop.fetch(url);
  return { status: res.status, body: await res.json() };
}

describe("REST mesh over Pilot", () => {
  test("users: list, one user, unknown user", async () => {
    expect(await get("http://users/api/users")).toEqual({ status: 200, body: [ALICE, BOB] });
    expect(await get("http://users/api/users/u2")).toEqual({ status: 200, body: BOB });
    expect(await get("http://users/api/users/u9")).toEqual({ status: 404, body: { error: "not found" } });
  });

  test("inventory: list, availability check, unknown sku", async () => {
    const all = await get("http://inventory/api/inventory");
    expect(all.status).toBe(200);
    expect(all.body.map((i: any) => i.sku)).toEqual(["gpu-a100", "dataset-01", "train-spot"]);
    expect(await get("http://inventory/api/inventory/check?sku=gpu-a100")).toEqual({ status: 200, body: { sku: "gpu-a100", available: true, count: 48 } });
    expect(await get("http://inventory/api/inventory/check?sku=nope")).toEqual({ status: 404, body: { error: "sku not found" } });
  });

  test("orders: list and filter by user, as in the tutorial", async () => {
    expect(await get("http://orders/api/orders")).toEqual({ status: 200, body: orders });
    const u1 = await get("http://orders/api/orders?user_id=u1");
    expect(u1.body).toEqual([
      { id: "o1", user_id: "u1", item: "GPU Cluster Hours", total: 250, status: "completed" },
      { id: "o3", user_id: "u1", item: "Model Training Run", total: 1200, status: "active" },
    ]);
    expect(await get("http://orders/api/orders?user_id=u9")).toEqual({ status: 200, body: [] });
    expect(await get("http://orders/api/orders/o9")).toEqual({ status: 404, body: { error: "order not found" } });
  });

  test("GET /api/orders/o1 embeds its user, which orders fetched from users over Pilot", async () => {
    const o1 = await get("http://orders/api/orders/o1");
    expect(o1).toEqual({ status: 200, body: { order: orders[0], user: ALICE } });
    const o2 = await get("http://orders/api/orders/o2");
    expect(o2.body.user).toEqual(BOB);

    // The users service logged both lookups as coming from the orders agent's Pilot address,
    // and the orders service logged its outgoing calls to users.
    const ordersAddress = c.daemon("orders").address.replace(/\./g, "\\.");
    await services.get("users")!.waitFor(new RegExp(`users: GET /api/users/u1 from ${ordersAddress}:\\d+ -> 200`));
    await services.get("users")!.waitFor(new RegExp(`users: GET /api/users/u2 from ${ordersAddress}:\\d+ -> 200`));
    await services.get("orders")!.waitFor(/orders: -> users GET http:\/\/users\/api\/users\/u1 200 /);
    // None of the shop's own requests to users were lookups by id of u1: those all came from orders.
    const shopAddress = c.daemon("shop").address;
    const userLog = services.get("users")!.stdout.split("\n");
    expect(userLog.filter((l) => l.includes("/api/users/u1 from ")).every((l) => !l.includes(shopAddress))).toBe(true);
  });

  test("a user the users service does not have: the order comes back without it", async () => {
    // The inventory agent serves port 80 but has no /api/users: it answers 404 like an unknown user.
    const calls: string[] = [];
    const log = (line: string) => calls.push(line);
    expect(await fetchUser(shop, "inventory", "u1", log)).toEqual({ user: null, error: "user u1 not found" });
    expect(await fetchUser(shop, "users", "u1", log)).toEqual({ user: ALICE });
    expect(calls[0]).toMatch(/^orders: -> users GET http:\/\/inventory\/api\/users\/u1 404 \(/);
    expect(calls[1]).toMatch(/^orders: -> users GET http:\/\/users\/api\/users\/u1 200 \(/);
  });

  test("users restarts: the next order has its user again (a kept-alive connection that died is retried once)", async () => {
    expect((await get("http://orders/api/orders/o1")).body.user).toEqual(ALICE); // orders now holds a connection to users
    expect(await services.get("users")!.stop("SIGTERM")).toBe(0);
    const users = runExample("mesh/users.ts", c.daemon("users"));
    services.set("users", users);
    await users.waitFor(/users service listening on pilot port 80/);
    expect(await get("http://orders/api/orders/o2")).toEqual({ status: 200, body: { order: orders[1], user: BOB } });
  });

  test("with the users service down, orders still answers, with user null and the reason", async () => {
    const users = services.get("users")!;
    expect(await users.stop("SIGTERM")).toBe(0);
    const started = performance.now();
    const o3 = await get("http://orders/api/orders/o3");
    expect(performance.now() - started).toBeLessThan(3500);
    expect(o3.status).toBe(200);
    expect(o3.body.order).toEqual(orders[2]);
    expect(o3.body.user).toBeNull();
    expect(o3.body.user_error).toBe("users service unavailable: connection refused: nothing is listening on that port");
    await services.get("orders")!.waitFor(/orders: -> users GET http:\/\/users\/api\/users\/u1 ECONNREFUSED \(/);
    // And the other services keep working.
    expect((await get("http://inventory/api/inventory/check?sku=train-spot")).body).toEqual({ sku: "train-spot", available: true, count: 12 });
  });

  test("each service stops cleanly on SIGTERM", async () => {
    for (const name of ["orders", "inventory"]) {
      const p = services.get(name)!;
      expect(await p.stop("SIGTERM")).toBe(0);
      expect(p.stdout).toContain(`${name}: SIGTERM received, shutting down`);
    }
  });
});

describe("when a service cannot start", () => {
  test("its port is taken on that agent (the service already runs): one error line and its hint, exit 1, no stack trace", async () => {
    for (const service of ["users", "orders", "inventory"]) {
      const running = runExample(`mesh/${service}.ts`, c.daemon(service));
      try {
        await running.waitFor(/listening on pilot port 80/);
        const again = runExample(`mesh/${service}.ts`, c.daemon(service));
        expect({ service, code: await again.exitCode() }).toEqual({ service, code: 1 });
        expect(again.stdout).toBe("");
        expect(again.stderr).toBe("error: port 80 is already in use\nhint: pick another port, or stop the program that listens on it\n");
        // The running one is unharmed.
        if (service === "users") expect((await get("http://users/api/users/u1")).body).toEqual(ALICE);
      } finally {
        await running.stop();
      }
    }
  });

  test("no daemon runs for its PILOT_HOME: the not_running error and the hint to start one, exit 1", async () => {
    const home = mkdtempSync(join(tmpdir(), "pilot-mesh-nodaemon-"));
    try {
      for (const service of ["users", "orders", "inventory"]) {
        const p = runExample(`mesh/${service}.ts`, null, { env: { PILOT_HOME: home } });
        expect({ service, code: await p.exitCode() }).toEqual({ service, code: 1 });
        expect(p.stdout).toBe("");
        expect(p.stderr).toMatch(/^error: no Pilot daemon is listening on \S+pilot\.sock\nhint: .*pilot daemon start.*\n$/);
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
