/**
 * Real `pilot rendezvous` processes on 127.0.0.1 for the registry and beacon
 * tests, and nodes (identity + client) talking to them. Every process started
 * here is killed by pid in `stopAll` (call it from afterAll) and at exit, even
 * when a test fails.
 *
 * PILOT_TEST_STORE=postgres runs every rendezvous started here on PostgreSQL
 * instead of SQLite: a private cluster (store/postgres-cluster.ts) started on
 * import and kept for the whole test process (one `bun test` runs many files,
 * each calling `stopAll`: a cluster per file cost seconds of each file's first
 * hook, and hooks after the first file get Bun's 5 s), stopped by its
 * watchdog once the process is gone; one database per rendezvous directory (a
 * restarted rendezvous finds its state again). Tests that seed a SQLite file
 * themselves (test/reputation's seedNodes) stay on SQLite's terms.
 */
import type { Subprocess } from "bun";
import { randomBytes } from "node:crypto";
import { connect as tcpConnect, type Socket } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import { RegistryClient, type RegistryClientOptions, type RegistryEvent } from "../../src/registry/client.ts";
import { encodeFrame, FrameReader, requestSigningBytes, toBase64 } from "../../src/registry/wire.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
let postgres: Promise<import("./store/postgres-cluster.ts").PostgresCluster> | undefined =
  process.env.PILOT_TEST_STORE === "postgres" ? import("./store/postgres-cluster.ts").then((m) => m.startPostgres()) : undefined;
// A failed start is the first rendezvous's error, not an unhandled rejection at import.
postgres?.catch(() => {});
const databases = new Map<string, string>();

/** The store of the rendezvous in `dir`: its SQLite file, or under PILOT_TEST_STORE=postgres its database. */
async function testStore(dir: string): Promise<string> {
  if (process.env.PILOT_TEST_STORE !== "postgres") return join(dir, "registry.db");
  let url = databases.get(dir);
  if (!url) {
    postgres ??= import("./store/postgres-cluster.ts").then((m) => m.startPostgres());
    url = await (await postgres).createDatabase();
    databases.set(dir, url);
  }
  return url;
}
const running = new Set<Subprocess>();
const dirs = new Set<string>();

process.on("exit", () => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
});

export interface RendezvousProcess {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  readonly beaconPort: number;
  readonly publicKey: string;
  readonly dir: string;
  readonly storePath: string;
  /** The /healthz URL, when started with --health-addr. */
  readonly health?: string;
  /** SIGTERM, then wait; resolves with the exit code and stderr. */
  stop(signal?: "SIGTERM" | "SIGINT"): Promise<{ code: number | null; stderr: string }>;
}

export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "pilot-rdv-test-"));
  dirs.add(dir);
  return dir;
}

/** Limits out of the way, for tests that are not about them. */
export const RELAXED = [
  "--registration-rate", "100000",
  "--prefix-registration-rate", "100000",
  "--pow-free-rate", "100000",
  "--request-rate", "100000",
  "--max-connections-per-ip", "100000",
  "--max-connections-per-prefix", "100000",
];

export async function startRendezvous(options: { dir?: string; args?: string[]; registryPort?: number; store?: string } = {}): Promise<RendezvousProcess> {
  const dir = options.dir ?? tempDir();
  const storePath = options.store ?? (await testStore(dir));
  // The key beside the state, as with SQLite, so a restart in the same directory keeps it.
  const identity = storePath.startsWith("postgres:") && !(options.args ?? []).includes("--identity") ? ["--identity", join(dir, "identity.json")] : [];
  const proc = Bun.spawn(
    [
      "bun",
      MAIN,
      "rendezvous",
      "--json",
      "--registry-addr",
      `127.0.0.1:${options.registryPort ?? 0}`,
      "--beacon-addr",
      "127.0.0.1:0",
      "--store",
      storePath,
      "--log-format",
      "json",
      ...(options.args ?? RELAXED),
      ...identity,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, PILOT_HOME: dir } },
  );
  running.add(proc);
  const stderrText = new Response(proc.stderr).text();
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 15_000;
  while (!text.includes("\n")) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now())).then(() => "timeout" as const)]);
    if (chunk === "timeout" || chunk.done) {
      proc.kill("SIGKILL");
      running.delete(proc);
      throw new Error(`rendezvous did not become ready: ${text} ${await stderrText}`);
    }
    text += new TextDecoder().decode(chunk.value);
  }
  reader.releaseLock();
  const envelope = JSON.parse(text.split("\n")[0]!);
  const port = Number(String(envelope.data.registry).split(":").at(-1));
  const beaconPort = Number(String(envelope.data.beacon).split(":").at(-1));
  return {
    proc,
    pid: proc.pid,
    host: "127.0.0.1",
    port,
    beaconPort,
    publicKey: envelope.data.public_key,
    health: envelope.data.health,
    dir,
    storePath,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => null)]);
      if (code === null) proc.kill("SIGKILL");
      running.delete(proc);
      return { code, stderr: await stderrText };
    },
  };
}

export interface TestNode {
  readonly identity: Identity;
  readonly client: RegistryClient;
  readonly id: number;
  readonly events: RegistryEvent[];
  /** Resolves with the next event matching `predicate` (default: any). */
  nextEvent(predicate?: (e: RegistryEvent) => boolean, timeoutMs?: number): Promise<RegistryEvent>;
}

const clients = new Set<RegistryClient>();

export async function connect(r: RendezvousProcess, identity: Identity, extra: Partial<RegistryClientOptions> = {}): Promise<RegistryClient> {
  const client = await RegistryClient.connect({ host: r.host, port: r.port, signer: identity, registryKey: r.publicKey, ...extra });
  clients.add(client);
  return client;
}

export async function newNode(
  r: RendezvousProcess,
  fields: Parameters<RegistryClient["register"]>[0] = {},
  options: { identity?: Identity; subscribe?: boolean; localAddress?: string } = {},
): Promise<TestNode> {
  const identity = options.identity ?? generateIdentity();
  const events: RegistryEvent[] = [];
  const waiters: { predicate: (e: RegistryEvent) => boolean; resolve: (e: RegistryEvent) => void }[] = [];
  const client = await connect(r, identity, {
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    onEvent: (e) => {
      const i = waiters.findIndex((w) => w.predicate(e));
      if (i >= 0) waiters.splice(i, 1)[0]!.resolve(e);
      else events.push(e);
    },
  });
  const reg = await client.register(fields);
  if (options.subscribe !== false) await client.subscribe();
  return {
    identity,
    client,
    id: reg.node_id,
    events,
    nextEvent(predicate = () => true, timeoutMs = 5000) {
      const i = events.findIndex(predicate);
      if (i >= 0) return Promise.resolve(events.splice(i, 1)[0]!);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no matching event in time")), timeoutMs);
        waiters.push({
          predicate,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
      });
    },
  };
}

/** Awaits `promise` and returns the RegistryError code it rejects with ("ok" if it resolves). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/**
 * Stops processes this test started detached (daemons by the pid they
 * printed): SIGTERM to all, up to 5 s each to exit, then SIGKILL.
 */
export async function stopPids(pids: readonly number[]): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // gone
    }
  };
  for (const pid of pids) signal(pid, "SIGTERM");
  for (const pid of pids) {
    for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(50);
    signal(pid, "SIGKILL");
  }
}

export async function stopAll(): Promise<void> {
  for (const c of clients) c.close();
  clients.clear();
  for (const p of running) {
    if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
    await Promise.race([p.exited, Bun.sleep(5000)]);
    if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  }
  running.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
  // The PostgreSQL cluster stays for the next file (its databases were these directories'); it stops at exit.
  databases.clear();
}

// ---------------------------------------------------------------------------
// Raw connections: hand-built frames, for the attack tests.


export class RawConnection {
  readonly frames: Record<string, unknown>[] = [];
  closed = false;
  private readonly reader = new FrameReader();
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      for (const f of this.reader.push(chunk)) if (f.kind === "message") this.frames.push(f.value);
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => {});
  }

  static open(port: number, host = "127.0.0.1"): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ host, port }, () => resolve(new RawConnection(socket)));
      socket.once("error", reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The next frame not yet taken (the hello first), or undefined if the connection closes first. */
  async next(timeoutMs = 3000): Promise<Record<string, unknown> | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0 && !this.closed) {
      if (Date.now() > deadline) throw new Error("no frame in time");
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.frames.shift();
  }

  /** Waits until the server closes the connection. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await Bun.sleep(10);
    return this.closed;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  send(message: Record<string, unknown>): void {
    this.write(encodeFrame(message));
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A signed request as the client would build it (`registryKey` raw 32 bytes). */
export function signedRequest(
  signer: { publicKey: Uint8Array; sign(m: Uint8Array): Uint8Array },
  registryKey: Uint8Array,
  fields: Record<string, unknown>,
  ts = Date.now(),
): Record<string, unknown> {
  const request: Record<string, unknown> = { id: 1, ...fields, ts, nonce: toBase64(new Uint8Array(randomBytes(16))) };
  request.sig = toBase64(signer.sign(requestSigningBytes(request, registryKey)));
  return request;
}

export function keyBytes(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, "base64"));
}
