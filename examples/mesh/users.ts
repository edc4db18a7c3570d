/**
 * Users service of the REST mesh, on Pilot port 80.
 *
 *   bun examples/mesh/users.ts
 *
 *   GET /api/users       -> every user
 *   GET /api/users/:id   -> one user, or 404 {"error":"not found"}
 *
 * The orders service calls /api/users/:id over Pilot to enrich its orders;
 * each request is logged with the Pilot address of the agent that sent it.
 */
import type http from "node:http";
import { connectToDaemon, serveOrExit, logRequests, sendJson, stopOnSignal } from "../common.ts";

export interface User {
  id: string;
  name: string;
  email: string;
}

export const users = new Map<string, User>([
  ["u1", { id: "u1", name: "Alice", email: "alice@example.com" }],
  ["u2", { id: "u2", name: "Bob", email: "bob@example.com" }],
]);

export function usersService(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = new URL(req.url ?? "/", "http://pilot").pathname;
  if (path === "/api/users") {
    sendJson(res, 200, [...users.values()]);
  } else if (path.startsWith("/api/users/")) {
    const user = users.get(decodeURIComponent(path.slice("/api/users/".length)));
    if (user) sendJson(res, 200, user);
    else sendJson(res, 404, { error: "not found" });
  } else {
    sendJson(res, 404, { error: "not found" });
  }
}

if (import.meta.main) {
  const pilot = await connectToDaemon();
  const server = await serveOrExit(pilot, 80, logRequests("users", usersService));
  console.log(`users service listening on pilot port ${server.port} (${pilot.address})`);
  stopOnSignal("users", async () => {
    await server.close();
    await pilot.close();
  });
}
