/**
 * Orders service of the REST mesh, on Pilot port 80. It calls the users
 * service over Pilot to enrich an order with its user.
 *
 *   USERS_SERVICE=users bun examples/mesh/orders.ts
 *
 *   GET /api/orders               -> every order
 *   GET /api/orders?user_id=u1    -> the orders of one user
 *   GET /api/orders/:id           -> {"order": {...}, "user": {...}}: the user comes
 *                                    from the users service, over Pilot
 *
 * USERS_SERVICE names the users agent (hostname, address or node id;
 * default `users`). The users agent must trust this one. If the user cannot
 * be had (unknown user, users service down or unreachable), the order is
 * still returned, with `"user": null` and a `user_error` saying why.
 */
import type http from "node:http";
import type { Driver } from "pilot/driver";
import { connectToDaemon, serveOrExit, logRequests, sendJson, stopOnSignal, urlHost } from "../common.ts";
import type { User } from "./users.ts";

export interface Order {
  id: string;
  user_id: string;
  item: string;
  total: number;
  status: string;
}

export const orders: Order[] = [
  { id: "o1", user_id: "u1", item: "GPU Cluster Hours", total: 250.0, status: "completed" },
  { id: "o2", user_id: "u2", item: "Dataset License", total: 75.0, status: "pending" },
  { id: "o3", user_id: "u1", item: "Model Training Run", total: 1200.0, status: "active" },
];

/** How long an order waits for the users service before answering without the user. */
const USERS_TIMEOUT_MS = 3000;

export type UserLookup = { user: User; error?: undefined } | { user: null; error: string };

/**
 * Asks the users service for one user, over Pilot. Never throws: failures
 * come back as `error`. Each call is logged with `log`.
 */
export async function fetchUser(pilot: Driver, usersService: string, userId: string, log: (line: string) => void = console.log): Promise<UserLookup> {
  const url = `http://${urlHost(usersService)}/api/users/${encodeURIComponent(userId)}`;
  const started = performance.now();
  const signal = AbortSignal.timeout(USERS_TIMEOUT_MS);
  let outcome: string;
  try {
    let res: Response;
    try {
      res = await pilot.fetch(url, { signal });
    } catch (error) {
      // A kept-alive connection can die between two requests (users restarted):
      // a GET is safe to send again, once, on a fresh connection.
      if (signal.aborted) throw error;
      res = await pilot.fetch(url, { signal });
    }
    outcome = String(res.status);
    if (res.status === 200) return { user: (await res.json()) as User };
    await res.body?.cancel();
    return { user: null, error: res.status === 404 ? `user ${userId} not found` : `users service answered ${res.status}` };
  } catch (error) {
    const e = error as Error & { code?: string };
    outcome = e.code ?? e.name;
    return { user: null, error: `users service unavailable: ${e.message}` };
  } finally {
    log(`orders: -> users GET ${url} ${outcome!} (${(performance.now() - started).toFixed(1)} ms)`);
  }
}

export function ordersService(pilot: Driver, usersService: string): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  return async (req, res) => {
    const url = new URL(req.url ?? "/", "http://pilot");
    if (url.pathname === "/api/orders") {
      const userId = url.searchParams.get("user_id");
      sendJson(res, 200, userId ? orders.filter((o) => o.user_id === userId) : orders);
    } else if (url.pathname.startsWith("/api/orders/")) {
      const order = orders.find((o) => o.id === decodeURIComponent(url.pathname.slice("/api/orders/".length)));
      if (!order) return sendJson(res, 404, { error: "order not found" });
      const lookup = await fetchUser(pilot, usersService, order.user_id);
      sendJson(res, 200, lookup.error === undefined ? { order, user: lookup.user } : { order, user: null, user_error: lookup.error });
    } else {
      sendJson(res, 404, { error: "not found" });
    }
  };
}

if (import.meta.main) {
  const usersService = process.env.USERS_SERVICE || "users";
  const pilot = await connectToDaemon();
  const server = await serveOrExit(pilot, 80, logRequests("orders", ordersService(pilot, usersService)));
  console.log(`orders service listening on pilot port ${server.port} (${pilot.address}); users service: ${usersService}`);
  stopOnSignal("orders", async () => {
    await server.close();
    await pilot.close();
  });
}
