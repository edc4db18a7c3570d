/**
 * `pilot rendezvous --store` over PostgreSQL's unix socket: the form the NAT
 * lab uses (its rendezvous runs in a network namespace, where 127.0.0.1 is
 * not this host's, and reaches the test cluster through the shared
 * filesystem). The URL forms the CLI takes, the ones it refuses (exit 2), and
 * a rendezvous in a namespace of its own with no route to 127.0.0.1's server
 * that opens, migrates and serves its store through the socket.
 */
import { afterAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { isRoot, postgresAvailable, startPostgres, type PostgresCluster } from "./postgres-cluster.ts";

const MAIN = resolve(import.meta.dir, "../../../src/cli/main.ts");
const withPostgres = postgresAvailable();
const home = mkdtempSync(join(tmpdir(), "pilot-pgsock-"));
const netns = `pgsock${process.pid}`;
let cluster: PostgresCluster | undefined;
let netnsMade = false;

afterAll(async () => {
  if (netnsMade) spawnSync("ip", ["netns", "del", netns]);
  await cluster?.stop();
  rmSync(home, { recursive: true, force: true });
});

/** Runs `pilot ARGS` (inside `wrap`, e.g. ip netns exec) until it exits or prints its ready line, then stops it by pid. */
async function rendezvous(store: string, wrap: string[] = []): Promise<{ code: number | null; ready?: any; stderr: string }> {
  const p = Bun.spawn([...wrap, process.execPath, MAIN, "rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--store", store], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, PILOT_HOME: home },
  });
  const killer = setTimeout(() => p.kill("SIGKILL"), 30_000);
  const stderr = new Response(p.stderr).text();
  let out = "";
  const reader = p.stdout.getReader();
  for (;;) {
    const chunk = await reader.read();
    if (chunk.done) break;
    out += new TextDecoder().decode(chunk.value);
    if (out.includes("\n")) break;
  }
  const line = out.split("\n")[0]!;
  const ready = line.startsWith("{") ? JSON.parse(line) : undefined;
  if (ready?.status === "ok") p.kill("SIGTERM");
  const code = await p.exited;
  clearTimeout(killer);
  return { code: ready?.status === "ok" ? null : code, ready, stderr: await stderr };
}

function usageError(r: { code: number | null; stderr: string }): { message: string; hint: string } {
  expect(r.code).toBe(2);
  const e = JSON.parse(r.stderr.trim().split("\n").at(-1)!);
  expect(e).toMatchObject({ status: "error", code: "invalid_argument" });
  return e;
}

test("a PostgreSQL URL without a host or database, or with a relative socket directory, is a usage error (exit 2) that shows the socket form", async () => {
  for (const bad of ["postgres://u:p@localhost/db?host=relative/dir", "postgres://u:p@localhost:5432/", "postgres://u:p@/db", "postgres://u:p@/db?port=5432"]) {
    const e = usageError(await rendezvous(bad));
    expect(e.hint).toContain("?host=/SOCKET/DIR");
    expect(`${e.message} ${e.hint}`).not.toContain(":p@");
  }
  expect(usageError(await rendezvous("postgres://u:p@localhost/db?host=relative/dir")).message).toContain("absolute path of the server's unix socket directory");
}, 60_000);

test.skipIf(!withPostgres)(
  "a rendezvous reaches PostgreSQL through its unix socket, in libpq's hostless form too, from a network namespace where 127.0.0.1 is not the server's",
  async () => {
    cluster = await startPostgres();
    const tcp = new URL(await cluster.createDatabase());
    const db = tcp.pathname.slice(1);
    let wrap: string[] = [];
    if (isRoot) {
      const made = spawnSync("ip", ["netns", "add", netns], { encoding: "utf8" });
      if (made.status !== 0) throw new Error(`ip netns add: ${made.stderr}`);
      netnsMade = true;
      spawnSync("ip", ["-n", netns, "link", "set", "lo", "up"]);
      wrap = ["ip", "netns", "exec", netns];
      // The TCP URL cannot work in there: the namespace's 127.0.0.1 has no server.
      const refused = await rendezvous(tcp.toString(), wrap);
      expect(refused.ready?.status).not.toBe("ok");
    }
    const forms = [
      cluster.socketUrl(tcp.toString()),
      `postgres://pilot:${tcp.password}@/${db}?host=${cluster.socketDir}&port=${cluster.port}`,
      `postgres://pilot:${tcp.password}@${encodeURIComponent(cluster.socketDir)}:${cluster.port}/${db}`,
    ];
    for (const url of forms) {
      const r = await rendezvous(url, wrap);
      if (r.ready?.status !== "ok") throw new Error(`${url.replace(tcp.password, "***")}: ${JSON.stringify(r.ready)} ${r.stderr}`);
      expect(r.ready.data.store).toContain(db);
      expect(r.ready.data.store).not.toContain(tcp.password);
    }
  },
  120_000,
);
