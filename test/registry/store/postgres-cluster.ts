/**
 * A private PostgreSQL cluster for tests: `initdb` into a temporary directory,
 * `pg_ctl start` on 127.0.0.1 and a free port, and on a unix socket in
 * `socketDir` (a subdirectory anyone may traverse, so a process in another
 * network namespace, where 127.0.0.1 is not this host's, reaches it through
 * the shared filesystem: `socketUrl`), a random password; `stop()` stops it
 * (immediate mode) and removes the directory, and a detached watchdog does the
 * same once the process that started it is gone without calling stop().
 * Nothing depends on a server being there already.
 *
 * PostgreSQL refuses to run as root: as root the binaries run as the
 * `postgres` user (Debian's package creates it) through runuser, and the
 * directory is handed to that user.
 *
 * `postgresBinDir()` finds the binaries (PATH, then /usr/lib/postgresql/N/bin).
 * When there are none: as root (CI) the caller fails; as a normal user it
 * skips, saying so.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";

export function postgresBinDir(): string | undefined {
  const which = spawnSync("sh", ["-c", "command -v initdb"], { encoding: "utf8" });
  if (which.status === 0 && which.stdout.trim()) {
    const real = spawnSync("readlink", ["-f", which.stdout.trim()], { encoding: "utf8" }).stdout.trim();
    return join(real, "..");
  }
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(base, versions[0], "bin") : undefined;
}

export const isRoot = process.getuid?.() === 0;

/** Whether the PostgreSQL tests can run here; throws as root without PostgreSQL (CI must not skip them silently). */
export function postgresAvailable(): boolean {
  if (postgresBinDir()) return true;
  if (isRoot) throw new Error("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): apt-get install postgresql");
  console.warn("SKIPPING the PostgreSQL store tests: PostgreSQL is not installed (apt-get install postgresql)");
  return false;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PostgresCluster {
  readonly port: number;
  readonly dir: string;
  /** The directory of the cluster's unix socket (.s.PGSQL.PORT). */
  readonly socketDir: string;
  /** postgres://pilot:PASS@127.0.0.1:PORT/DB for a new, empty database. */
  createDatabase(name?: string): Promise<string>;
  /** The same database over the unix socket: postgres://pilot:PASS@localhost:PORT/DB?host=SOCKETDIR. */
  socketUrl(tcpUrl: string): string;
  stop(): Promise<void>;
}

let databases = 0;

/** `durable`: PostgreSQL's default durability (fsync, synchronous_commit); else both off, for fast tests. */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  if (!bin) throw new Error("PostgreSQL is not installed");
  const dir = mkdtempSync(join(tmpdir(), "pilot-pg-"));
  const data = join(dir, "data");
  const password = randomBytes(12).toString("hex");
  const pwfile = join(dir, "pw");
  // The socket's directory is searchable by anyone (the socket itself is 0777, PostgreSQL's default);
  // the data directory (0700) and the password file (0600) beside it stay the cluster owner's.
  const socketDir = join(dir, "socket");
  mkdirSync(socketDir, { mode: 0o755 });
  chmodSync(dir, 0o711);
  writeFileSync(pwfile, password, { mode: 0o600 });
  const run = (cmd: string, args: string[], timeout = 60_000) => {
    const argv = isRoot ? ["runuser", "-u", "postgres", "--", join(bin, cmd), ...args] : [join(bin, cmd), ...args];
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr || r.stdout}`);
  };
  if (isRoot) {
    chownSync(dir, uidOf("postgres"), gidOf("postgres"));
    chownSync(pwfile, uidOf("postgres"), gidOf("postgres"));
    chownSync(socketDir, uidOf("postgres"), gidOf("postgres"));
  }
  let port = 0;
  let started = false;
  const stop = async () => {
    if (started) {
      try {
        run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"], 30_000);
      } catch {
        // already gone
      }
      started = false;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    run("initdb", ["-D", data, "-U", "pilot", "--pwfile", pwfile, "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync"]);
    for (let attempt = 0; ; attempt++) {
      port = await freePort();
      try {
        run("pg_ctl", [
          "-D",
          data,
          "-l",
          join(dir, "log"),
          "-w",
          "-t",
          "30",
          "-o",
          `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1 -c max_connections=200` +
            (options.durable ? "" : " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"),
          "start",
        ]);
        started = true;
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  reapWhenGone(dir, data, bin);
  const admin = `postgres://pilot:${password}@127.0.0.1:${port}/postgres`;
  return {
    port,
    dir,
    socketDir,
    socketUrl(tcpUrl) {
      const u = new URL(tcpUrl);
      u.hostname = "localhost";
      u.searchParams.set("host", socketDir);
      return u.toString();
    },
    async createDatabase(name = `pilot_${process.pid}_${++databases}`) {
      const sql = new SQL({ url: admin, max: 1 });
      try {
        await sql.unsafe(`CREATE DATABASE ${name}`);
      } finally {
        await sql.close();
      }
      return `postgres://pilot:${password}@127.0.0.1:${port}/${name}`;
    },
    stop,
  };
}

/**
 * A watchdog, detached from this process (its own session, a child of init, so
 * that no test runner's clean-up of dangling processes ends it): once this
 * process is gone, however it ended, it stops the cluster and removes its
 * directory; once the directory is gone (stop() ran) it ends itself. `bun test`
 * runs no exit handlers, so this is what stops a cluster a run still held.
 */
function reapWhenGone(dir: string, data: string, bin: string): void {
  const pgCtl = `${isRoot ? "runuser -u postgres -- " : ""}'${join(bin, "pg_ctl")}' -D '${data}' -m immediate -w stop`;
  const watch = `while kill -0 ${process.pid} 2>/dev/null && [ -d '${data}' ]; do sleep 1; done; if [ -d '${data}' ]; then ${pgCtl}; rm -rf '${dir}'; fi`;
  spawnSync("sh", ["-c", `setsid sh -c "${watch}" </dev/null >/dev/null 2>&1 &`], { stdio: "ignore" });
}

function uidOf(user: string): number {
  return Number(spawnSync("id", ["-u", user], { encoding: "utf8" }).stdout.trim());
}

function gidOf(user: string): number {
  return Number(spawnSync("id", ["-g", user], { encoding: "utf8" }).stdout.trim());
}
