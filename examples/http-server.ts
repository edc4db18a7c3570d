/**
 * An HTTP server on Pilot port 80, written with plain `node:http`.
 *
 *   bun examples/http-server.ts
 *
 *   GET  /api/status  -> {"status":"healthy","agent":"<this agent's address>","version":"1.0.0"}
 *   POST /api/echo    -> the JSON body, sent back
 *
 * Pilot's port 80 is a virtual port of this agent, not TCP port 80 of the
 * machine: no root, no conflict with a local web server. Only agents that
 * trust this one (or everyone, if it is public) can reach it.
 */
import type http from "node:http";
import { connectToDaemon, serveOrExit, logRequests, readJson, sendJson, stopOnSignal } from "./common.ts";

export const PORT = 80;

/** The tutorial's two routes, for the agent whose address is `agent`. */
export function statusService(agent: string): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  return async (req, res) => {
    const path = new URL(req.url ?? "/", "http://pilot").pathname;
    if (path === "/api/status") {
      sendJson(res, 200, { status: "healthy", agent, version: "1.0.0" });
    } else if (path === "/api/echo") {
      const body = await readJson(req);
      if (body === undefined) sendJson(res, 400, { error: "send a JSON body" });
      else sendJson(res, 200, body);
    } else {
      sendJson(res, 404, { error: "not found" });
    }
  };
}

if (import.meta.main) {
  const pilot = await connectToDaemon();
  const server = await serveOrExit(pilot, PORT, logRequests("http-server", statusService(pilot.address)));
  console.log(`HTTP server listening on pilot port ${server.port} (${pilot.address})`);
  stopOnSignal("http-server", async () => {
    await server.close();
    await pilot.close();
  });
}
