/**
 * The registry under load from lightweight simulated nodes: real `pilot
 * rendezvous` processes, real TCP, every request signed by its node's own
 * key (no daemons; answers are read but their signatures not checked, so the
 * load generator's CPU goes to signing). Three set-ups in one run:
 *
 *   sqlite/1    one registry on its SQLite file
 *   postgres/1  one registry on PostgreSQL
 *   postgres/2  two registries on one PostgreSQL database (one identity), the nodes split between them
 *
 * For each: N nodes register (public, a hostname and a tag each), heartbeat,
 * then lookups, resolves (with contact), tag searches and trust request +
 * approve pairs from random nodes.
 *
 * Two kinds of phase, labelled:
 * - open loop ("lookup (open loop)", "search (tag, open)"): requests sent on a
 *   schedule at a fixed offered rate (`--lookup-rate`, default 5 000/s;
 *   `--search-rate`, default 1 000/s; over all registries of the set-up, for
 *   `--open-seconds`, default 5; a comma-separated list runs a sweep), whatever the answers do; each latency runs from
 *   the request's scheduled send time (no coordinated omission). Printed: offered
 *   and achieved rate, p50 / p99 / max. This is what the goals are stated in.
 *   The requests are signed before the timed part (fresh nonce and ts each,
 *   sent within 30 s, inside the registry's 60 s window): on a real network the
 *   nodes sign on their own machines, not on the registry's cores. They go over
 *   one connection per 40 requests/s (`--open-connections`), as a real network's
 *   nodes each hold their own and the registry answers one connection's requests
 *   in order, at most 50 frames/s beyond its accepted requests.
 * - closed loop ("... (closed, max)" and the others): `--connections` x
 *   `--in-flight` requests outstanding (default 16 x 8 = 128), a new one as each
 *   answer comes: the most the set-up serves, its p50 / p99 including that queue
 *   (by Little's law 128 in flight at 5 000/s is ~26 ms each, whatever the registry).
 *
 * The load generator runs on the same cores as the registries and PostgreSQL:
 * its signing (closed loop), parsing and sending take CPU from them.
 * PILOT_BENCH_CPU_PROF=DIR runs the registries under Bun's sampling profiler;
 * `--registry-tree DIR` runs another checkout's registries (for A/B figures).
 *
 * The PostgreSQL server is a private cluster started for the run in a
 * temporary directory (initdb + pg_ctl, test/registry/store/postgres-cluster.ts,
 * default durability settings: fsync and synchronous_commit on), removed at
 * the end; or PILOT_BENCH_POSTGRES=postgres://... to use one already running
 * (each set-up gets a new database in it).
 *
 *   bun run bench:registry                 # N = 10000
 *   bun run bench:registry -- --nodes 2000 --lookups 10000 --only sqlite/1
 *   bun run bench:registry -- --bulk 1000000 --nodes 1000 --only sqlite/1,postgres/1
 *
 * `--bulk M` first loads M public nodes straight into each store (one of 1 000 tags
 * `tag<k>` each, `bulk-<i>` hostnames; not through the registry), so lookups and tag
 * searches run against a store of M + N nodes; lookups then target bulk nodes.
 *
 * `--bulk` on PostgreSQL ends with VACUUM ANALYZE (what autovacuum leaves on a settled database).
 *
 * Bounded: every phase stops at its count or after 60 s, whichever comes first.
 * Goals (issue 14, this 2-core machine): 10 000 registrations in <= 10 s;
 * >= 5 000 lookups/s at p99 <= 10 ms across two registries (the open-loop lookup line of
 * postgres/2); with 1 000 000 nodes, lookups and tag searches at p99 <= 10 ms.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect as tcpConnect, type Socket } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SQL } from "bun";
import { generateIdentity, type Identity } from "../../src/crypto/identity.ts";
import { encodeFrame, FrameReader, fromBase64, requestSigningBytes, toBase64 } from "../../src/registry/wire.ts";
import { startPostgres, type PostgresCluster } from "../../test/registry/store/postgres-cluster.ts";

const ROOT = resolve(import.meta.dir, "../..");
const args = process.argv.slice(2);
/** --registry-tree DIR: the registries run DIR's pilot (another checkout, for A/B figures); the load stays this one's. */
const REGISTRY_TREE = (() => {
  const i = args.indexOf("--registry-tree");
  return i >= 0 ? resolve(args[i + 1]!) : ROOT;
})();
const arg = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const only = (() => {
  const i = args.indexOf("--only");
  return i >= 0 ? args[i + 1]!.split(",") : undefined;
})();
const NODES = arg("nodes", 10_000);
const LOOKUPS = arg("lookups", 30_000);
const RESOLVES = arg("resolves", 5_000);
const SEARCHES = arg("searches", 5_000);
const TRUST_PAIRS = arg("trust", 1_000);
const CONNECTIONS = arg("connections", 16);
const IN_FLIGHT = arg("in-flight", 8); // per connection
const PHASE_LIMIT_MS = 60_000;
const BULK = arg("bulk", 0);
/** Open-loop phases: offered rates (per second, over all registries of a set-up) and how long each runs. */
const rates = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]!.split(",").map(Number) : [fallback];
};
/** Comma-separated lists run one open-loop phase per rate, in order (a sweep). */
const LOOKUP_RATES = rates("lookup-rate", 5_000);
const SEARCH_RATES = rates("search-rate", 1_000);
const OPEN_SECONDS = arg("open-seconds", 5);
/**
 * Connections of the open-loop phases (0: one per 40 requests/s of the rate). A real network's nodes
 * each hold their own connection, and the registry bounds one connection to 50 frames/s (burst 200)
 * beyond its accepted requests, and answers one connection's requests in order: a few connections
 * carrying thousands of requests a second would measure that per-connection queue, not the registry.
 */
const OPEN_CONNECTIONS = arg("open-connections", 0);

/** Loads BULK public nodes straight into a store, before any registry opens it. */
async function bulkLoad(store: string): Promise<void> {
  if (BULK <= 0) return;
  const t = performance.now();
  if (store.startsWith("postgres:")) {
    const { PostgresStorage } = await import("../../src/registry/postgres-storage.ts");
    await (await PostgresStorage.open(store)).close(); // the schema
    const sql = new SQL({ url: store, max: 1 });
    try {
      await sql.unsafe(
        `INSERT INTO nodes (id, public_key, hostname, public, tags, endpoints, observed_ip, registered_at, last_seen, active, origin_net)
         SELECT g, 'bulk' || g, 'bulk-' || g, true, '["tag' || (g % 1000) || '"]', '["0.0.0.0:4000"]', '198.51.100.7', 0, $1, true, NULL
         FROM generate_series(4, $2::bigint + 3) g`,
        [Date.now(), BULK],
      );
      await sql.unsafe(`INSERT INTO node_tags (tag, node_id) SELECT 'tag' || (g % 1000), g FROM generate_series(4, $1::bigint + 3) g`, [BULK]);
      // Node ids come from a sequence (schema 4): registrations after the bulk get the next ones.
      await sql.unsafe("SELECT setval('pilot_node_ids', $1::bigint + 3)", [BULK]);
      await sql.unsafe("VACUUM ANALYZE");
    } finally {
      await sql.close();
    }
  } else {
    const { RegistryStore } = await import("../../src/registry/store.ts");
    const s = RegistryStore.open(store);
    s.close();
    const { Database } = await import("bun:sqlite");
    const db = new Database(store);
    const now = Date.now();
    const node = db.query("INSERT INTO nodes (id, public_key, hostname, public, tags, endpoints, observed_ip, registered_at, last_seen, active) VALUES (?, ?, ?, 1, ?, '[\"0.0.0.0:4000\"]', '198.51.100.7', 0, ?, 1)");
    const tag = db.query("INSERT INTO node_tags (tag, node_id) VALUES (?, ?)");
    db.transaction(() => {
      for (let g = 4; g < BULK + 4; g++) {
        node.run(g, `bulk${g}`, `bulk-${g}`, `["tag${g % 1000}"]`, now);
        tag.run(`tag${g % 1000}`, g);
      }
    })();
    db.exec("ANALYZE");
    db.close();
  }
  console.log(`(${BULK} nodes bulk-loaded into ${store.startsWith("postgres:") ? "PostgreSQL" : "SQLite"} in ${((performance.now() - t) / 1000).toFixed(1)} s)`);
}

// ---- a registry process --------------------------------------------------------------------

interface Registry {
  child: ChildProcess;
  port: number;
  key: Uint8Array;
  stop(): Promise<void>;
}

/** PILOT_BENCH_CPU_PROF=DIR: each registry runs under Bun's sampling profiler, its .cpuprofile written to DIR when it stops. */
function profileFlags(): string[] {
  const dir = process.env.PILOT_BENCH_CPU_PROF;
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [];
}

async function startRegistry(store: string, identity: string, home: string): Promise<Registry> {
  const relaxed = ["--registration-rate", "1000000", "--prefix-registration-rate", "1000000", "--pow-bits", "0", "--pow-free-rate", "1000000", "--request-rate", "1000000"];
  const limits = ["--max-connections-per-ip", "100000", "--max-connections-per-prefix", "100000", "--log-level", "warn"];
  const child = spawn(
    process.execPath,
    [...profileFlags(), join(REGISTRY_TREE, "src/cli/main.ts"), "rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--store", store, "--identity", identity, ...relaxed, ...limits],
    { cwd: REGISTRY_TREE, env: { ...process.env, PILOT_HOME: home }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const ready = await new Promise<any>((resolveReady, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`rendezvous did not start: ${stderr}`)), 30_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) {
        clearTimeout(timer);
        resolveReady(JSON.parse(line));
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`rendezvous exited with ${code}: ${stderr}`));
    });
  });
  return {
    child,
    port: Number(String(ready.data.registry).split(":").at(-1)),
    key: fromBase64(ready.data.public_key, 32)!,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, Bun.sleep(10_000).then(() => child.kill("SIGKILL"))]);
    },
  };
}

// ---- connections carrying many nodes' signed requests ---------------------------------------

class Conn {
  private readonly reader = new FrameReader();
  private readonly waiting = new Map<number, (answer: Record<string, unknown>) => void>();
  private nextId = 1;
  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      for (const f of this.reader.push(chunk)) {
        if (f.kind !== "message" || f.value.type !== "response") continue;
        const done = this.waiting.get(f.value.id as number);
        if (done) {
          this.waiting.delete(f.value.id as number);
          done(f.value);
        }
      }
    });
    socket.on("error", () => {});
  }

  static open(port: number): Promise<Conn> {
    return new Promise((resolveOpen, reject) => {
      const socket = tcpConnect({ host: "127.0.0.1", port, noDelay: true });
      let conn: Conn | undefined;
      socket.once("error", reject);
      // The hello comes first: wait for it before any request.
      const reader = new FrameReader();
      const onHello = (chunk: Buffer) => {
        for (const f of reader.push(chunk)) {
          if (f.kind === "message" && f.value.type === "hello") {
            socket.off("data", onHello);
            conn = new Conn(socket);
            resolveOpen(conn);
            return;
          }
        }
      };
      socket.on("data", onHello);
    });
  }

  /** Signs `fields` as `node` for `registryKey` and waits for the answer. */
  call(node: Identity, registryKey: Uint8Array, fields: Record<string, unknown>): Promise<Record<string, unknown>> {
    const { id, frame } = this.sign(node, registryKey, fields);
    return new Promise((resolveCall) => {
      this.waiting.set(id, resolveCall);
      this.socket.write(frame);
    });
  }

  /** A request signed now (fresh nonce, ts now) and framed, to send later with `send`. */
  sign(node: Identity, registryKey: Uint8Array, fields: Record<string, unknown>): { id: number; frame: Uint8Array } {
    const id = this.nextId++;
    const request: Record<string, unknown> = { ...fields, id, ts: Date.now(), nonce: toBase64(new Uint8Array(randomBytes(16))) };
    request.sig = toBase64(node.sign(requestSigningBytes(request, registryKey)));
    return { id, frame: encodeFrame(request) };
  }

  /** Sends frames signed by `sign` in one write; `onAnswer` gets each one's response. */
  send(requests: { id: number; frame: Uint8Array }[], onAnswer: (id: number, answer: Record<string, unknown>) => void): void {
    for (const r of requests) this.waiting.set(r.id, (answer) => onAnswer(r.id, answer));
    this.socket.write(requests.length === 1 ? requests[0]!.frame : Buffer.concat(requests.map((r) => r.frame)));
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---- phases --------------------------------------------------------------------------------

interface PhaseResult {
  name: string;
  done: number;
  failed: number;
  seconds: number;
  p50: number;
  p99: number;
  errors: Record<string, number>;
}

/**
 * Runs `count` operations over the connections, IN_FLIGHT at a time on each; `op(i, conn)` makes
 * operation i. Stops early after PHASE_LIMIT_MS.
 */
async function phase(name: string, count: number, conns: { conn: Conn; key: Uint8Array }[], op: (i: number, c: { conn: Conn; key: Uint8Array }) => Promise<Record<string, unknown>>): Promise<PhaseResult> {
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let next = 0;
  let failed = 0;
  const start = performance.now();
  const deadline = start + PHASE_LIMIT_MS;
  const worker = async (c: { conn: Conn; key: Uint8Array }) => {
    for (;;) {
      const i = next++;
      if (i >= count || performance.now() > deadline) return;
      const t = performance.now();
      const answer = await op(i, c);
      latencies.push(performance.now() - t);
      if (answer.ok !== true) {
        failed++;
        const code = String((answer.error as { code?: string } | undefined)?.code ?? "?");
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  };
  await Promise.all(conns.flatMap((c) => Array.from({ length: IN_FLIGHT }, () => worker(c))));
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return { name, done: latencies.length, failed, seconds, p50: pct(0.5), p99: pct(0.99), errors };
}

/**
 * Open loop: `count` requests at a fixed offered `rate` (per second, spread over the connections, so
 * over the registries), whatever the answers do. Every request is signed before the timed part (a
 * fresh nonce and ts each, well inside the registry's freshness window: a real network's nodes sign
 * on their own machines, not on the registry's cores), then sent on its schedule; its latency runs
 * from its scheduled send time to its answer, so a registry that falls behind is charged for the
 * queue it builds (no coordinated omission). The sender wakes every millisecond or so and sends
 * what is due, one write per connection: up to ~1 ms of its own lag is in the figures.
 */
async function openLoop(
  name: string,
  count: number,
  rate: number,
  registries: Registry[],
  make: (i: number) => { node: Identity; fields: Record<string, unknown> },
): Promise<OpenLoopResult> {
  const conns: { conn: Conn; key: Uint8Array }[] = [];
  try {
    for (let i = 0; i < (OPEN_CONNECTIONS || Math.ceil(rate / 40)); i++) {
      const r = registries[i % registries.length]!;
      conns.push({ conn: await Conn.open(r.port), key: r.key });
    }
    return await openLoopOn(name, count, rate, conns, make);
  } finally {
    for (const c of conns) c.conn.close();
  }
}

async function openLoopOn(
  name: string,
  count: number,
  rate: number,
  conns: { conn: Conn; key: Uint8Array }[],
  make: (i: number) => { node: Identity; fields: Record<string, unknown> },
): Promise<OpenLoopResult> {
  // The registry refuses a ts more than REQUEST_WINDOW_MS away: keep the schedule well inside it.
  count = Math.min(count, Math.floor(rate * 30));
  let t = performance.now();
  const planned = Array.from({ length: count }, (_, i) => {
    const c = conns[i % conns.length]!;
    const { node, fields } = make(i);
    return { c, ...c.conn.sign(node, c.key, fields) };
  });
  const signSeconds = (performance.now() - t) / 1000;
  const latencies = new Float64Array(count).fill(NaN);
  const errors: Record<string, number> = {};
  let answered = 0;
  let failed = 0;
  let lastAnswer = 0;
  const interval = 1000 / rate;
  const start = performance.now() + 20;
  const scheduled = (i: number) => start + i * interval;
  let next = 0;
  let allAnswered!: () => void;
  const done = new Promise<void>((r) => (allAnswered = r));
  const onAnswer = (index: number, answer: Record<string, unknown>) => {
    const now = performance.now();
    latencies[index] = now - scheduled(index);
    lastAnswer = now;
    answered++;
    if (answer.ok !== true) {
      failed++;
      const code = String((answer.error as { code?: string } | undefined)?.code ?? "?");
      errors[code] = (errors[code] ?? 0) + 1;
    }
    if (answered === count) allAnswered();
  };
  const byId = new Map<Conn, Map<number, number>>(); // request id -> index, per connection
  for (const c of conns) byId.set(c.conn, new Map());
  planned.forEach((p, i) => byId.get(p.c.conn)!.set(p.id, i));
  const sendDue = () => {
    const now = performance.now();
    const due = new Map<Conn, { id: number; frame: Uint8Array }[]>();
    while (next < count && scheduled(next) <= now) {
      const p = planned[next++]!;
      let list = due.get(p.c.conn);
      if (!list) due.set(p.c.conn, (list = []));
      list.push(p);
    }
    for (const [conn, list] of due) {
      const ids = byId.get(conn)!;
      conn.send(list, (id, answer) => onAnswer(ids.get(id)!, answer));
    }
    if (next < count) setTimeout(sendDue, Math.max(0, scheduled(next) - performance.now()));
  };
  t = performance.now();
  setTimeout(sendDue, Math.max(0, start - t));
  const limit = Math.max(PHASE_LIMIT_MS, (count / rate) * 1000 + 10_000);
  await Promise.race([done, Bun.sleep(limit)]);
  const sent = next;
  next = count; // stop sending (a phase cut short by its time limit)
  const seconds = ((answered > 0 ? lastAnswer : performance.now()) - start) / 1000;
  const sorted = Array.from(latencies).sort((a, b) => (Number.isNaN(a) ? 1 : Number.isNaN(b) ? -1 : a - b));
  // An unanswered request counts as infinitely slow: it is in the percentiles.
  const pct = (p: number) => {
    const v = sorted[Math.min(count - 1, Math.floor(count * p))];
    return v === undefined || Number.isNaN(v) ? Infinity : v;
  };
  const lost = count - answered;
  if (lost > 0) errors["no answer"] = lost;
  return {
    name,
    offered: rate,
    sent,
    answered,
    failed: failed + lost,
    signSeconds,
    achieved: answered / seconds,
    p50: pct(0.5),
    p99: pct(0.99),
    max: answered === count ? sorted[count - 1]! : Infinity,
    errors,
  };
}

interface OpenLoopResult {
  name: string;
  offered: number;
  sent: number;
  answered: number;
  failed: number;
  signSeconds: number;
  achieved: number;
  p50: number;
  p99: number;
  max: number;
  errors: Record<string, number>;
}

function reportOpen(setup: string, r: OpenLoopResult): void {
  const errors = r.failed > 0 ? `  errors ${JSON.stringify(r.errors)}` : "";
  const ms = (v: number, w: number) => (Number.isFinite(v) ? v.toFixed(2) : "inf").padStart(w);
  console.log(
    `${setup.padEnd(11)} ${r.name.padEnd(22)} ${String(r.answered).padStart(6)} offered ${r.offered.toFixed(0).padStart(6)}/s achieved ${r.achieved.toFixed(0).padStart(6)}/s  p50 ${ms(r.p50, 6)} ms  p99 ${ms(r.p99, 7)} ms  max ${ms(r.max, 7)} ms  (pre-signed in ${r.signSeconds.toFixed(1)} s)${errors}`,
  );
}

function report(setup: string, r: PhaseResult): void {
  const rate = r.done / r.seconds;
  const errors = r.failed > 0 ? `  errors ${JSON.stringify(r.errors)}` : "";
  console.log(
    `${setup.padEnd(11)} ${r.name.padEnd(22)} ${String(r.done).padStart(6)} in ${r.seconds.toFixed(2).padStart(6)} s  ${rate.toFixed(0).padStart(6)}/s  p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(7)} ms${errors}`,
  );
}

async function runSetup(setup: string, stores: string[], identities: Identity[], dir: string): Promise<void> {
  const identityFile = join(dir, `${setup.replace("/", "-")}-identity.json`);
  const registries: Registry[] = [];
  const conns: { conn: Conn; key: Uint8Array }[] = [];
  try {
    await bulkLoad(stores[0]!);
    for (const [i, store] of stores.entries()) registries.push(await startRegistry(store, identityFile, join(dir, `${setup.replace("/", "-")}-${i}`)));
    for (let i = 0; i < CONNECTIONS; i++) {
      const r = registries[i % registries.length]!;
      conns.push({ conn: await Conn.open(r.port), key: r.key });
    }
    const ids: number[] = new Array(identities.length);
    const reg = await phase("register", identities.length, conns, async (i, c) => {
      const a = await c.conn.call(identities[i]!, c.key, { type: "register", public_key: toBase64(identities[i]!.publicKey), hostname: `bench-${i}`, tags: [`t${i % 100}`], public: true });
      ids[i] = a.node_id as number;
      return a;
    });
    report(setup, reg);
    const n = identities.length;
    const pick = () => Math.floor(Math.random() * n);
    report(setup, await phase("heartbeat", n, conns, (i, c) => c.conn.call(identities[i]!, c.key, { type: "heartbeat", node_id: ids[i] })));
    const lookupTarget = () => (BULK > 0 ? 4 + Math.floor(Math.random() * BULK) : ids[pick()]);
    for (const rate of LOOKUP_RATES.filter((r) => r > 0)) {
      reportOpen(
        setup,
        await openLoop("lookup (open loop)", Math.round(rate * OPEN_SECONDS), rate, registries, () => {
          const who = pick();
          return { node: identities[who]!, fields: { type: "lookup", node_id: ids[who], target: lookupTarget() } };
        }),
      );
    }
    report(
      setup,
      await phase("lookup (closed, max)", LOOKUPS, conns, (i, c) => {
        const who = pick();
        return c.conn.call(identities[who]!, c.key, { type: "lookup", node_id: ids[who], target: lookupTarget() });
      }),
    );
    report(
      setup,
      await phase("resolve (contact)", RESOLVES, conns, (i, c) => {
        const who = pick();
        return c.conn.call(identities[who]!, c.key, { type: "resolve", node_id: ids[who], target: ids[pick()], contact: true });
      }),
    );
    const tagQuery = (i: number) => (BULK > 0 ? `tag${i % 1000}` : `t${i % 100}`);
    for (const rate of SEARCH_RATES.filter((r) => r > 0)) {
      reportOpen(
        setup,
        await openLoop("search (tag, open)", Math.round(rate * OPEN_SECONDS), rate, registries, (i) => {
          const who = pick();
          return { node: identities[who]!, fields: { type: "search", node_id: ids[who], query: tagQuery(i) } };
        }),
      );
    }
    report(
      setup,
      await phase("search (tag, closed)", SEARCHES, conns, (i, c) => {
        const who = pick();
        return c.conn.call(identities[who]!, c.key, { type: "search", node_id: ids[who], query: tagQuery(i) });
      }),
    );
    // Trust: node 2k asks node 2k+1, which approves; a pair is two signed requests in order.
    report(
      setup,
      await phase("trust request+approve", Math.min(TRUST_PAIRS, Math.floor(n / 2)), conns, async (i, c) => {
        const [x, y] = [2 * i, 2 * i + 1];
        const asked = await c.conn.call(identities[x]!, c.key, { type: "trust_request", node_id: ids[x], to: ids[y], reason: "bench" });
        if (asked.ok !== true) return asked;
        return c.conn.call(identities[y]!, c.key, { type: "trust_approve", node_id: ids[y], peer: ids[x] });
      }),
    );
  } finally {
    for (const c of conns) c.conn.close();
    for (const r of registries) await r.stop();
  }
}

// ---- main ----------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "pilot-bench-registry-"));
let cluster: PostgresCluster | undefined;
try {
  console.log(
    `registry bench: ${NODES} nodes${BULK > 0 ? ` (+ ${BULK} bulk-loaded)` : ""}; open loop: lookups at ${LOOKUP_RATES.join(", ")}/s and tag searches at ${SEARCH_RATES.join(", ")}/s for ${OPEN_SECONDS} s each, ` +
      `pre-signed, over ${OPEN_CONNECTIONS || "one per 40/s of"} connections; closed loop (max throughput): ${LOOKUPS} lookups, ${RESOLVES} resolves, ${SEARCHES} searches, ${TRUST_PAIRS} trust pairs, ${CONNECTIONS} connections x ${IN_FLIGHT} in flight`,
  );
  if (REGISTRY_TREE !== ROOT) console.log(`(registries run the pilot in ${REGISTRY_TREE})`);
  console.log(`(the load generator runs on the same cores as the registries and PostgreSQL: its signing and parsing take CPU from them; load average ${loadavg().map((l) => l.toFixed(2)).join(" ")})`);
  let t = performance.now();
  const identities = Array.from({ length: NODES }, () => generateIdentity());
  console.log(`(${NODES} node keys made in ${((performance.now() - t) / 1000).toFixed(1)} s)`);
  const external = process.env.PILOT_BENCH_POSTGRES;
  const wants = (s: string) => !only || only.includes(s);
  let newDatabase: (() => Promise<string>) | undefined;
  if (wants("postgres/1") || wants("postgres/2")) {
    if (external) {
      let n = 0;
      newDatabase = async () => {
        const name = `pilot_bench_${process.pid}_${++n}`;
        const sql = new SQL({ url: external, max: 1 });
        try {
          await sql.unsafe(`CREATE DATABASE ${name}`);
        } finally {
          await sql.close();
        }
        const u = new URL(external);
        u.pathname = `/${name}`;
        return u.toString();
      };
    } else {
      t = performance.now();
      cluster = await startPostgres({ durable: process.env.PILOT_BENCH_FAST_PG !== "1" });
      console.log(`(private PostgreSQL cluster started in ${((performance.now() - t) / 1000).toFixed(1)} s, ${process.env.PILOT_BENCH_FAST_PG === "1" ? "fsync and synchronous_commit off" : "durable settings"})`);
      newDatabase = () => cluster!.createDatabase();
    }
  }
  if (wants("sqlite/1")) await runSetup("sqlite/1", [join(dir, "registry.db")], identities, dir);
  if (wants("postgres/1")) await runSetup("postgres/1", [await newDatabase!()], identities, dir);
  if (wants("postgres/2")) {
    const url = await newDatabase!();
    await runSetup("postgres/2", [url, url], identities, dir);
  }
} finally {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
}
