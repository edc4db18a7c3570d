/**
 * An opt-in health endpoint for load balancers and service managers
 * (`pilot rendezvous --health-addr 127.0.0.1:9002`): `GET /healthz` answers
 * 200 `{"status":"ok",...}` while the registry listens and its store answers
 * a query within a second, else 503 `{"status":"unavailable",...}`. It says
 * nothing about nodes or trust: the store's kind, the schema version, uptime.
 * Anything else is 404. Meant for a local or private address.
 */
import type { RegistryStorage } from "./storage.ts";

export interface HealthServer {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

const STORE_TIMEOUT_MS = 1_000;

export async function startHealthServer(options: { host: string; port: number; store: RegistryStorage; startedAt?: number }): Promise<HealthServer> {
  const startedAt = options.startedAt ?? Date.now();
  const check = async (): Promise<{ ok: boolean; body: Record<string, unknown> }> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const version = await Promise.race([
        options.store.schemaVersion(),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("the store did not answer within 1 s")), STORE_TIMEOUT_MS))),
      ]);
      return { ok: true, body: { status: "ok", store: options.store.kind, schema_version: version, uptime_s: Math.floor((Date.now() - startedAt) / 1000) } };
    } catch (e) {
      return { ok: false, body: { status: "unavailable", store: options.store.kind, error: String((e as Error).message ?? e).slice(0, 200) } };
    } finally {
      if (timer) clearTimeout(timer);
    }
  };
  const server = Bun.serve({
    hostname: options.host,
    port: options.port,
    async fetch(request) {
      const url = new URL(request.url);
      if (url.pathname !== "/healthz" || (request.method !== "GET" && request.method !== "HEAD")) return new Response("not found\n", { status: 404 });
      const { ok, body } = await check();
      return new Response(JSON.stringify(body) + "\n", { status: ok ? 200 : 503, headers: { "content-type": "application/json", "cache-control": "no-store" } });
    },
  });
  return {
    address: { host: options.host, port: server.port ?? options.port },
    async close() {
      await server.stop(true);
    },
  };
}
