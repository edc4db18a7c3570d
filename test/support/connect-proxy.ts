/**
 * A tiny HTTP CONNECT proxy for tests: it answers CONNECT host:port (with
 * basic auth when `auth` is "user:password"), then pipes bytes both ways.
 * Anything else gets 405; a wrong or missing password gets 407. It records
 * every CONNECT target, so a test can tell that traffic really went through it.
 *
 *   const proxy = await startConnectProxy({ host: "127.0.0.1", port: 0, auth: "u:p" });
 *   proxy.port; proxy.connects   // ["127.0.0.1:443", ...]
 *   proxy.close();
 *
 * Run as a script (`bun connect-proxy.ts HOST PORT [user:password]`) it
 * serves until killed and prints "listening HOST:PORT" and one "CONNECT
 * target" line per tunnel (the NAT lab runs it inside a namespace).
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export interface ConnectProxy {
  readonly port: number;
  readonly connects: string[];
  readonly refused: number;
  close(): void;
}

export function startConnectProxy(options: { host: string; port: number; auth?: string; onConnect?: (target: string) => void }): Promise<ConnectProxy> {
  const connects: string[] = [];
  let refused = 0;
  const sockets = new Set<Socket>();
  const expected = options.auth ? `Basic ${Buffer.from(options.auth).toString("base64")}` : null;
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > 16 * 1024) client.destroy();
        return;
      }
      client.off("data", onData);
      const lines = head.subarray(0, end).toString("latin1").split("\r\n");
      const rest = head.subarray(end + 4);
      const [method, target] = lines[0]!.split(" ");
      const auth = lines.find((l) => /^proxy-authorization:/i.test(l))?.replace(/^[^:]*:\s*/, "") ?? null;
      if (method !== "CONNECT" || !target || !/^[^:\s]+:\d+$|^\[[0-9a-f:.]+\]:\d+$/i.test(target)) {
        refused++;
        client.end("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      if (expected && auth !== expected) {
        refused++;
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const colon = target.lastIndexOf(":");
      const upstream = connect({ host: target.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(target.slice(colon + 1)) });
      sockets.add(upstream);
      upstream.on("close", () => sockets.delete(upstream));
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      upstream.once("connect", () => {
        connects.push(target);
        options.onConnect?.(target);
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream);
        upstream.pipe(client);
      });
    };
    client.on("data", onData);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : options.port,
        connects,
        get refused() {
          return refused;
        },
        close() {
          server.close();
          for (const s of sockets) s.destroy();
        },
      });
    });
  });
}

if (import.meta.main) {
  const [host, port, auth] = process.argv.slice(2);
  const proxy = await startConnectProxy({ host: host ?? "127.0.0.1", port: Number(port ?? 0), auth, onConnect: (t) => console.log(`CONNECT ${t}`) });
  console.log(`listening ${host}:${proxy.port}`);
  process.on("SIGTERM", () => {
    proxy.close();
    process.exit(0);
  });
}
