/**
 * The tutorial's secure HTTP service: `node:http` on Pilot port 443 over the
 * secure channel.
 *
 *   bun examples/secure-server.ts
 *
 *   GET /api/secrets  -> {"message":"This payload is double-encrypted","tunnel":"AES-256-GCM (shared tunnel key)","conn":"AES-256-GCM (per-connection X25519 key)"}
 *
 * `serveHttp(443, handler, { secure: true })` accepts only secure channels:
 * each connection starts with an X25519 exchange signed by both nodes'
 * identities and then carries AES-256-GCM records with keys of its own,
 * inside the tunnel's encryption. Clients: `secure-client.ts` (dialSecure),
 * `pilot.fetch("https://…")`, or curl through the gateway mapped with
 * `--secure`: `pilotctl gateway start --ports 443 --secure AGENT`, then
 * `curl http://10.4.0.1:443/api/secrets`. A plain stream to it (or the
 * gateway without `--secure`) gets nothing but a reset.
 */
import type http from "node:http";
import { connectToDaemon, logRequests, sendJson, serveOrExit, stopOnSignal } from "./common.ts";

export const SECURE_PORT = 443;

/** What /api/secrets answers, as in the tutorial. */
export const SECRETS = {
  message: "This payload is double-encrypted",
  tunnel: "AES-256-GCM (shared tunnel key)",
  conn: "AES-256-GCM (per-connection X25519 key)",
} as const;

/** The tutorial's one route. */
export function secretsService(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = new URL(req.url ?? "/", "http://pilot").pathname;
  if (path === "/api/secrets") sendJson(res, 200, SECRETS);
  else sendJson(res, 404, { error: "not found" });
}

if (import.meta.main) {
  const pilot = await connectToDaemon();
  const server = await serveOrExit(pilot, SECURE_PORT, logRequests("secure-server", secretsService), { secure: true });
  console.log(`Secure HTTP server on pilot port ${server.port} (${pilot.address})`);
  stopOnSignal("secure-server", async () => {
    await server.close();
    await pilot.close();
  });
}
