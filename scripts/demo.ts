#!/usr/bin/env bun
/**
 * `bun run demo`: two agents exchanging HTTP over Pilot, on this machine.
 *
 * Starts a rendezvous and two daemons (each in its own temporary PILOT_HOME,
 * 127.0.0.1 only, free ports), names them, establishes trust, serves the
 * tutorial's HTTP service (examples/http-server.ts) on agent-a's Pilot port
 * 80, calls it from agent-b, pings, maps agent-a to a local IP with the
 * gateway and curls it, then runs the A2A data-analyst agent on a third node
 * and has the official A2A SDK client call it through the gateway. It prints
 * each step: what ran, what came back, how long it took. Everything it
 * started is stopped by pid and the temporary directory removed, also on
 * Ctrl-C or failure.
 *
 * The gateway's subnet: the default 10.4.0.0/16 when run as root (sudo), a
 * 127.x subnet otherwise (no alias, no root); PILOT_DEMO_SUBNET overrides it.
 * Without root the gateway forwards TCP port 8080 (ports below 1024 need
 * root), so the services also answer on Pilot port 8080.
 *
 * Exit code: 0 when every step passed, 1 when one failed (with the reason
 * and the last log lines of the processes), 130/143 when interrupted.
 *
 * The demo is a list of steps (`steps` below); later features add theirs.
 * Set PILOT_BIN=dist/pilot to run the compiled executable instead of the
 * sources.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import type http from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { connect, type Driver, type PilotHttpServer } from "../src/driver/index.ts";
import { PORT as HTTP_PORT, statusService } from "../examples/http-server.ts";

const ROOT = resolve(import.meta.dir, "..");
const STEP_TIMEOUT_MS = 20_000;
const START_TIMEOUT_MS = 15_000;
const IS_ROOT = process.getuid?.() === 0;
/** The TCP port the gateway forwards (to the same Pilot port): 80 needs root. */
const GATEWAY_PORT = IS_ROOT ? 80 : 8080;
const GATEWAY_SUBNET = process.env.PILOT_DEMO_SUBNET || (IS_ROOT ? "10.4.0.0/16" : `127.${64 + (process.pid % 128)}.0.0/16`);
const urlFor = (ip: string, path = "") => `http://${ip}${GATEWAY_PORT === 80 ? "" : `:${GATEWAY_PORT}`}${path}`;
const STOP_TIMEOUT_MS = 5_000;

// ---- output -----------------------------------------------------------------

const useColor = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: string) => (text: string) => (useColor ? `\x1b[${code}m${text}\x1b[0m` : text);
const bold = paint("1");
const dim = paint("2");
const red = paint("31");
const green = paint("32");
const cyan = paint("36");

const INDENT = "      ";
const out = {
  /** A command line or SDK call that the step ran. */
  ran: (text: string) => console.log(`${INDENT}${cyan("$")} ${text}`),
  /** What came back. */
  got: (text: string) => console.log(`${INDENT}${dim("→")} ${text}`),
  note: (text: string) => console.log(`${INDENT}${dim(text)}`),
};

const ms = (t: number) => (t < 10 ? `${t.toFixed(2)} ms` : t < 1000 ? `${t.toFixed(1)} ms` : `${(t / 1000).toFixed(2)} s`);

// ---- processes ----------------------------------------------------------------

/** The `pilot` command: PILOT_BIN if set, else the CLI from source with this Bun. */
function pilotCommand(): string[] {
  const bin = process.env.PILOT_BIN;
  return bin ? [resolve(ROOT, bin)] : [process.execPath, join(ROOT, "src/cli/main.ts")];
}

/** A process the demo started: stopped by its pid at clean-up; its stderr goes to a log file. */
class DemoProcess {
  constructor(
    readonly name: string,
    readonly proc: Subprocess,
    readonly logPath: string,
  ) {}

  get pid(): number {
    return this.proc.pid;
  }

  logTail(lines = 8): string[] {
    try {
      return readFileSync(this.logPath, "utf8").trimEnd().split("\n").filter(Boolean).slice(-lines);
    } catch {
      return [];
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_MS. Returns how it ended. */
  async stop(): Promise<string> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return `had already exited (${this.proc.signalCode ?? `code ${this.proc.exitCode}`})`;
    this.proc.kill("SIGTERM");
    const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), STOP_TIMEOUT_MS));
    if ((await Promise.race([this.proc.exited, timer])) !== "timeout") return "stopped";
    this.proc.kill("SIGKILL");
    await this.proc.exited;
    return "killed (did not stop within 5 s)";
  }
}

/**
 * Runs `pilot <args> --json` as a long-lived process in PILOT_HOME=`home` and
 * waits for its ready envelope on stdout (`{"status":"ok","data":{...}}`).
 */
async function startPilot(demo: Demo, name: string, home: string, args: string[]): Promise<{ proc: DemoProcess; data: any }> {
  if (demo.closing) throw new DemoError("the demo is stopping");
  const logPath = join(demo.dir, `${name.replace(/\W+/g, "-")}.log`);
  const logFd = openSync(logPath, "a", 0o600);
  const [cmd, ...base] = pilotCommand();
  const sub = Bun.spawn([cmd!, ...base, ...args, "--json"], {
    cwd: ROOT,
    env: { ...process.env, PILOT_HOME: home },
    stdin: "ignore",
    stdout: "pipe",
    stderr: logFd,
  });
  closeSync(logFd);
  const proc = new DemoProcess(name, sub, logPath);
  demo.processes.push(proc);

  const reader = sub.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const readReady = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      text += decoder.decode(value, { stream: true });
      const complete = text.split("\n").slice(0, -1);
      const line = complete.find((l) => l.startsWith("{"));
      if (line) return JSON.parse(line);
    }
  })();
  const exited = sub.exited.then(() => null);
  const timeout = Bun.sleep(START_TIMEOUT_MS).then(() => "timeout" as const);
  const ready = await Promise.race([readReady, exited, timeout]);
  if (ready === "timeout") throw new DemoError(`${name} did not become ready within ${START_TIMEOUT_MS / 1000} s`);
  if (!ready || ready.status !== "ok") {
    await Promise.race([sub.exited, Bun.sleep(1000)]); // its last words reach the log
    // With --json, a start-up error is one envelope on stderr, which is the log file.
    const envelope = ready ?? parseEnvelope(proc.logTail(20).findLast((l) => l.startsWith('{"status":"error"')));
    const why = envelope?.message ?? proc.logTail(1)[0] ?? `exited with code ${sub.exitCode}`;
    throw new DemoError(`${name} failed to start: ${why}`, envelope?.hint);
  }
  // Keep draining stdout so the process never blocks on a full pipe.
  void (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done);
  })();
  return { proc, data: ready.data };
}

function parseEnvelope(line: string | undefined): Record<string, any> | undefined {
  try {
    return line ? JSON.parse(line) : undefined;
  } catch {
    return undefined;
  }
}

// ---- the demo's state and steps --------------------------------------------------

class DemoError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

interface Agent {
  /** "a" or "b": the directory and process name. */
  id: string;
  /** The hostname it claims in step 3. */
  hostname: string;
  home: string;
  address: string;
  nodeId: number;
  proc: DemoProcess;
  driver: Driver;
}

interface Demo {
  dir: string;
  /** Short-lived CLI commands in flight (killed if the demo stops under them). */
  commands: Set<Subprocess>;
  /** Set once clean-up begins: nothing new may start. */
  closing: boolean;
  processes: DemoProcess[];
  registry?: string;
  beacon?: string;
  agents: Map<string, Agent>;
  server?: PilotHttpServer;
  /** The same service on the gateway's port when that is not 80 (no root). */
  extraServer?: PilotHttpServer;
  /** The gateway's local IP for agent-a, e.g. 10.4.0.1. */
  gatewayIp?: string;
  /** What agent-a's HTTP server saw: one line per request. */
  served: string[];
}

function agent(demo: Demo, id: string): Agent {
  const a = demo.agents.get(id);
  if (!a) throw new DemoError(`agent ${id} is not running (an earlier step failed)`);
  return a;
}

interface CliResult {
  ok: boolean;
  /** `data` of the ok envelope. */
  data?: any;
  /** The error envelope: code, message, hint. */
  error?: { code: string; message: string; hint?: string };
}

const shellWord = (w: string) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `"${w.replace(/(["\\$`])/g, "\\$1")}"`);

/**
 * Runs a short `pilot <args> --json` command as `who`'s user (its PILOT_HOME),
 * printing the command line unless `quiet`. Returns the parsed envelope.
 */
async function pilot(demo: Demo, who: Agent, args: string[], options: { quiet?: boolean } = {}): Promise<CliResult> {
  if (demo.closing) throw new DemoError("the demo is stopping");
  const full = [...args, "--json"];
  if (!options.quiet) out.ran(`PILOT_HOME=$DEMO/${who.id} pilot ${full.map(shellWord).join(" ")}`);
  const [cmd, ...base] = pilotCommand();
  const sub = Bun.spawn([cmd!, ...base, ...full], { cwd: ROOT, env: { ...process.env, PILOT_HOME: who.home }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  demo.commands.add(sub);
  const [stdout, stderr] = await Promise.all([new Response(sub.stdout).text(), new Response(sub.stderr).text()]);
  const code = await sub.exited;
  demo.commands.delete(sub);
  const envelope = parseEnvelope((code === 0 ? stdout : stderr).trim().split("\n").pop());
  if (code === 0 && envelope && "data" in envelope) return { ok: true, data: envelope.data };
  if (code === 1 && envelope && "code" in envelope) return { ok: false, error: envelope as CliResult["error"] };
  throw new DemoError(`pilot ${args[0]} exited with code ${code}: ${(stderr || stdout).trim().split("\n").pop() ?? ""}`);
}

/** `pilot(...)` that must succeed: returns its data, or throws its error. */
async function pilotOk(demo: Demo, who: Agent, args: string[], options: { quiet?: boolean } = {}): Promise<any> {
  const r = await pilot(demo, who, args, options);
  if (!r.ok) throw new DemoError(`pilot ${args[0]} failed: ${r.error!.code}: ${r.error!.message}`, r.error!.hint);
  return r.data;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new DemoError(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

interface Step {
  title: string;
  run(demo: Demo): Promise<void>;
}

const steps: Step[] = [
  {
    title: "Start a rendezvous (registry on TCP, beacon on UDP), 127.0.0.1 only",
    async run(demo) {
      const args = ["rendezvous", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0"];
      out.ran(`PILOT_HOME=$DEMO/rendezvous pilot ${args.join(" ")}`);
      const { proc, data } = await startPilot(demo, "rendezvous", join(demo.dir, "rendezvous"), args);
      demo.registry = data.registry;
      demo.beacon = data.beacon;
      out.got(`registry ${data.registry} (tcp), beacon ${data.beacon} (udp), pid ${proc.pid}`);
    },
  },
  {
    title: "Start two daemons, each with its own identity in its own PILOT_HOME",
    async run(demo) {
      const ids = ["a", "b"];
      const args = ["daemon", "start", "--foreground", "--registry", demo.registry!, "--beacon", demo.beacon!, "--listen", "127.0.0.1:0"];
      for (const id of ids) out.ran(`PILOT_HOME=$DEMO/${id} pilot ${args.join(" ")}`);
      const started = await Promise.all(
        ids.map(async (id) => {
          const home = join(demo.dir, id);
          const { proc, data } = await startPilot(demo, `daemon ${id}`, home, args);
          const driver = await connect({ socketPath: data.socket });
          const a: Agent = { id, hostname: `agent-${id}`, home, address: data.address, nodeId: data.node_id, proc, driver };
          return { a, data };
        }),
      );
      for (const { a, data } of started) {
        demo.agents.set(a.id, a);
        out.got(`daemon ${a.id}: address ${a.address}, tunnel udp ${data.endpoint}, pid ${a.proc.pid}`);
      }
    },
  },
  {
    title: "Name them: claim the hostnames agent-a and agent-b in the registry",
    async run(demo) {
      for (const id of ["a", "b"]) {
        const a = agent(demo, id);
        const r = await pilotOk(demo, a, ["set-hostname", a.hostname]);
        out.got(`node ${r.node_id} is now ${r.hostname}`);
      }
    },
  },
  {
    title: "Nodes are private by default: agent-b cannot see agent-a yet",
    async run(demo) {
      const r = await pilot(demo, agent(demo, "b"), ["find", "agent-a"]);
      if (r.ok) throw new DemoError(`agent-b found agent-a (${r.data.address}) before any trust: private nodes must be invisible to strangers`);
      if (r.error!.code !== "not_found") throw new DemoError(`pilot find failed: ${r.error!.code}: ${r.error!.message}`, r.error!.hint);
      out.got(`${r.error!.code}: ${r.error!.message}  ${dim("(as expected: a private node is invisible to nodes it does not trust)")}`);
    },
  },
  {
    title: "Establish trust: agent-b asks with a reason, agent-a approves",
    async run(demo) {
      const [a, b] = [agent(demo, "a"), agent(demo, "b")];
      // agent-b cannot look agent-a up by name yet, so it asks by address (shared out of band).
      const asked = await pilotOk(demo, b, ["handshake", a.address, "demo: agent-b wants to call agent-a's HTTP API"]);
      out.got(`request sent to ${asked.address}: ${asked.status}`);
      let shown = false;
      const request = await until("agent-a to receive the request", async () => {
        const r = await pilotOk(demo, a, ["pending"], { quiet: shown });
        shown = true;
        return r.pending.find((p: any) => p.node_id === b.nodeId);
      });
      out.got(`from ${request.hostname ?? "?"} (${request.address}), reason: ${JSON.stringify(request.reason)}`);
      const approved = await pilotOk(demo, a, ["approve", "agent-b"]);
      out.got(`${approved.address}: ${approved.status}`);
      shown = false;
      const seen = await until("agent-b to see the trust", async () => {
        const r = await pilotOk(demo, b, ["trust"], { quiet: shown });
        shown = true;
        return r.trusted.find((t: any) => t.node_id === a.nodeId);
      });
      out.got(`agent-b trusts ${seen.hostname ?? seen.address} (${seen.address}): a pair both sides agreed to`);
    },
  },
  {
    title: "Serve the tutorial's HTTP service on agent-a's Pilot port 80",
    async run(demo) {
      const a = agent(demo, "a");
      const service = statusService(a.address);
      const recorded: http.RequestListener = (req, res) => {
        demo.served.push(`${req.method} ${req.url} from ${req.socket.remoteAddress}:${req.socket.remotePort}`);
        return service(req, res);
      };
      out.ran(`agent-a ▸ driver.serveHttp(${HTTP_PORT}, statusService)   ${dim("(examples/http-server.ts)")}`);
      demo.server = await a.driver.serveHttp(HTTP_PORT, recorded);
      out.got(`node:http server answering on ${a.address} port ${demo.server.port} (a virtual port; no TCP port is opened)`);
    },
  },
  {
    title: "Call it from agent-b over the encrypted tunnel",
    async run(demo) {
      const [a, b] = [agent(demo, "a"), agent(demo, "b")];
      out.ran(`agent-b ▸ driver.resolve("agent-a")`);
      const resolved = await b.driver.resolve("agent-a");
      out.got(`${resolved} (visible now that they trust each other)`);

      let t = performance.now();
      out.ran(`agent-b ▸ driver.fetch("http://agent-a/api/status")`);
      const status = await b.driver.fetch("http://agent-a/api/status");
      const statusBody = await status.text();
      out.got(`${status.status} ${statusBody.trim()}  ${dim(`(${ms(performance.now() - t)}, including the tunnel handshake)`)}`);
      const parsed = JSON.parse(statusBody);
      if (status.status !== 200 || parsed.status !== "healthy" || parsed.agent !== a.address) {
        throw new DemoError(`unexpected /api/status answer: ${status.status} ${statusBody.trim()}`);
      }

      const payload = { message: "hello from agent-b", sent_at: new Date().toISOString() };
      t = performance.now();
      out.ran(`agent-b ▸ driver.fetch("http://agent-a/api/echo", { method: "POST", body: '${JSON.stringify(payload)}' })`);
      const echo = await b.driver.fetch("http://agent-a/api/echo", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      });
      const echoBody = await echo.text();
      out.got(`${echo.status} ${echoBody.trim()}  ${dim(`(${ms(performance.now() - t)}, same connection, kept alive)`)}`);
      if (echo.status !== 200 || JSON.stringify(JSON.parse(echoBody)) !== JSON.stringify(payload)) {
        throw new DemoError(`the echo did not match what was sent: ${echo.status} ${echoBody.trim()}`);
      }
      for (const line of demo.served) out.note(`agent-a's server saw: ${line}`);
    },
  },
  {
    title: "Ping agent-a from agent-b (overlay round trip through both daemons)",
    async run(demo) {
      const r = await pilotOk(demo, agent(demo, "b"), ["ping", "agent-a", "--count", "3", "--interval", "50ms"]);
      for (const p of r.results) out.got(p.error ? `seq=${p.seq} ${p.error}: ${p.message}` : `reply from ${r.target}: seq=${p.seq} rtt=${p.rtt_ms} ms`);
      out.note(`${r.received}/${r.sent} replies, loss ${r.loss_pct}%; min ${r.min_ms} ms, avg ${r.avg_ms} ms, max ${r.max_ms} ms`);
      if (r.received !== r.sent) throw new DemoError(`${r.sent - r.received} of ${r.sent} pings got no reply`);
    },
  },
  {
    title: `The gateway: map agent-a to a local IP (${GATEWAY_SUBNET}) so plain curl reaches it`,
    async run(demo) {
      const [a, b] = [agent(demo, "a"), agent(demo, "b")];
      if (GATEWAY_PORT !== HTTP_PORT) {
        // Without root the gateway forwards 8080; serve the same handler there too.
        demo.extraServer = await a.driver.serveHttp(GATEWAY_PORT, statusService(a.address));
        out.note(`(not root: agent-a also serves the service on Pilot port ${GATEWAY_PORT}, the port the gateway forwards)`);
      }
      const args = ["gateway", "start", "--foreground", "--subnet", GATEWAY_SUBNET, "--ports", String(GATEWAY_PORT), "agent-a"];
      out.ran(`PILOT_HOME=$DEMO/b ${IS_ROOT ? "sudo " : ""}pilot ${args.filter((x) => x !== "--foreground").join(" ")}`);
      const { data } = await startPilot(demo, "gateway", b.home, args);
      const mapping = data.mappings[0];
      demo.gatewayIp = mapping.local_ip;
      out.got(`Gateway active: ${mapping.pilot_addr} -> ${mapping.local_ip}:${GATEWAY_PORT}`);
      const url = urlFor(mapping.local_ip, "/api/status");
      const t = performance.now();
      const curl = Bun.which("curl");
      out.ran(`curl ${url}`);
      let body: string;
      if (curl) {
        const sub = Bun.spawn([curl, "-sS", "--max-time", "10", url], { stdout: "pipe", stderr: "pipe" });
        const [text, err, code] = await Promise.all([new Response(sub.stdout).text(), new Response(sub.stderr).text(), sub.exited]);
        if (code !== 0) throw new DemoError(`curl failed (exit ${code}): ${err.trim()}`);
        body = text.trim();
      } else {
        body = (await (await fetch(url)).text()).trim();
        out.note("(curl is not installed: the same request was made with fetch)");
      }
      out.got(`${body}  ${dim(`(${ms(performance.now() - t)}: curl -> gateway -> agent-b's daemon -> tunnel -> agent-a)`)}`);
      if (JSON.parse(body).agent !== a.address) throw new DemoError(`unexpected answer through the gateway: ${body}`);
      const list = await pilotOk(demo, b, ["gateway", "list"]);
      for (const m of list.mappings) out.got(`gateway list: ${m.pilot_addr}  ${m.local_ip}  ${m.ports.join(",")}  ${m.hostname ?? ""}`);
    },
  },
  {
    title: "An A2A agent: data-analyst (tagged nlp, analysis) on a third node, trusted by agent-b",
    async run(demo) {
      const b = agent(demo, "b");
      const home = join(demo.dir, "c");
      const args = ["daemon", "start", "--foreground", "--registry", demo.registry!, "--beacon", demo.beacon!, "--listen", "127.0.0.1:0", "--hostname", "data-analyst", "--tags", "nlp,analysis"];
      out.ran(`PILOT_HOME=$DEMO/c pilot ${args.filter((x) => x !== "--foreground").join(" ")}`);
      const { proc, data } = await startPilot(demo, "daemon c", home, args);
      const driver = await connect({ socketPath: data.socket });
      const c: Agent = { id: "c", hostname: "data-analyst", home, address: data.address, nodeId: data.node_id, proc, driver };
      demo.agents.set("c", c);
      out.got(`data-analyst: ${c.address}`);
      await pilotOk(demo, b, ["handshake", String(c.nodeId), "demo: agent-b wants to use the data-analyst"]);
      await pilotOk(demo, c, ["approve", "agent-b"]);
      await until("trust between agent-b and data-analyst", async () => {
        const r = await pilotOk(demo, b, ["trust"], { quiet: true });
        return r.trusted.find((t: any) => t.node_id === c.nodeId);
      });
      out.got("agent-b and data-analyst trust each other");
      out.ran(`PILOT_HOME=$DEMO/c PORT=${GATEWAY_PORT} bun examples/a2a-agent/agent.ts`);
      const logPath = join(demo.dir, "a2a-agent.log");
      const logFd = openSync(logPath, "a", 0o600);
      const sub = Bun.spawn([process.execPath, join(ROOT, "examples/a2a-agent/agent.ts")], {
        cwd: ROOT,
        env: { ...process.env, PILOT_HOME: home, PORT: String(GATEWAY_PORT), STEP_MS: "100" },
        stdin: "ignore",
        stdout: logFd,
        stderr: logFd,
      });
      closeSync(logFd);
      demo.processes.push(new DemoProcess("a2a agent", sub, logPath));
      await until("the A2A agent to listen", async () => (readFileSync(logPath, "utf8").includes("listening on pilot port") ? true : undefined), 15_000);
      out.got(`A2A agent card served over Pilot port ${GATEWAY_PORT}: /.well-known/agent-card.json (and agent.json)`);
    },
  },
  {
    title: "Discover it by tag, map it through the gateway, and call it with the official A2A SDK client",
    async run(demo) {
      const b = agent(demo, "b");
      // The agent serves on the gateway's port (8080 without root), so discovery reads its card there.
      const portArgs = GATEWAY_PORT === 80 ? [] : ["--port", String(GATEWAY_PORT)];
      const found = await pilotOk(demo, b, ["a2a", "discover", "--tag", "nlp", ...portArgs]);
      for (const ag of found.agents ?? []) {
        out.got(`${ag.name ?? ag.hostname} at ${ag.address}: skills ${(ag.skills ?? []).map((sk: any) => sk.name).join(", ")}`);
      }
      for (const f of found.failed ?? []) out.got(`${f.hostname ?? f.address} not listed: ${f.code}: ${f.reason}`);
      if (!(found.agents ?? []).length) {
        const why = (found.failed ?? []).map((f: any) => `${f.hostname ?? f.address}: ${f.code}: ${f.reason}`).join("; ");
        throw new DemoError(`pilot a2a discover found no A2A agent tagged nlp${why ? ` (${why})` : ""}`);
      }
      const mapped = await pilotOk(demo, b, ["gateway", "map", "data-analyst", "--ports", String(GATEWAY_PORT)]);
      out.got(`data-analyst -> ${mapped.local_ip}:${GATEWAY_PORT} (added to the running gateway)`);
      const url = urlFor(mapped.local_ip);
      out.ran(`bun examples/a2a-agent/client.ts ${url}   ${dim("(ClientFactory from @a2a-js/sdk/client, plain fetch: no Pilot SDK)")}`);
      const sub = Bun.spawn([process.execPath, join(ROOT, "examples/a2a-agent/client.ts"), url, "Analyze the sentiment of these reviews"], { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: process.env });
      demo.commands.add(sub);
      const [text, err, code] = await Promise.all([new Response(sub.stdout).text(), new Response(sub.stderr).text(), sub.exited]);
      demo.commands.delete(sub);
      for (const line of text.trim().split("\n")) if (line.trim()) out.got(line.trim());
      if (code !== 0) throw new DemoError(`the A2A client failed (exit ${code}): ${(err || text).trim().split("\n").pop()}`);
    },
  },
];

// ---- running and cleaning up ---------------------------------------------------------

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DemoError(`${what} did not finish within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Stops everything the demo started (servers, SDK connections, processes by pid) and removes its directory. */
async function cleanUp(demo: Demo): Promise<void> {
  demo.closing = true;
  const started = performance.now();
  for (const sub of demo.commands) sub.kill("SIGKILL");
  console.log(bold("Clean-up"));
  if (demo.server) await withTimeout(demo.server.close(), 2000, "closing the HTTP server").catch(() => {});
  if (demo.extraServer) await withTimeout(demo.extraServer.close(), 2000, "closing the HTTP server").catch(() => {});
  for (const a of demo.agents.values()) await a.driver.close().catch(() => {});
  // Daemons first (they say goodbye to the registry), then the rendezvous.
  const daemons = demo.processes.filter((p) => p.name !== "rendezvous");
  const rest = demo.processes.filter((p) => p.name === "rendezvous");
  for (const group of [daemons, rest]) {
    const results = await Promise.all(
      group.map(async (p) => {
        const t = performance.now();
        const how = await p.stop();
        return [p, how, performance.now() - t] as const;
      }),
    );
    for (const [p, how, took] of results) out.got(`${p.name} (pid ${p.pid}): ${how} ${dim(`(${ms(took)})`)}`);
  }
  rmSync(demo.dir, { recursive: true, force: true });
  out.got(`removed ${demo.dir}`);
  out.note(`clean-up took ${ms(performance.now() - started)}`);
}

async function main(): Promise<never> {
  const demo: Demo = { dir: mkdtempSync(join(tmpdir(), "pilot-demo-")), closing: false, commands: new Set(), processes: [], agents: new Map(), served: [] };
  const began = performance.now();
  let finishing: Promise<never> | null = null;
  let interrupted = false;
  const finish = (code: number, verdict: string): Promise<never> =>
    (finishing ??= (async () => {
      try {
        await cleanUp(demo);
      } catch (error) {
        console.error(red(`clean-up failed: ${(error as Error).message}; remove ${demo.dir} by hand`));
        code = code || 1;
      }
      console.log(`\n${verdict}`);
      process.exit(code);
    })());

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      console.log(`\n${signal} received: stopping the demo`);
      void finish(signal === "SIGINT" ? 130 : 143, red(`demo interrupted (${signal}); everything it started was stopped`));
    });
  }
  process.on("uncaughtException", (error) => void finish(1, red(`demo failed: ${error.message}`)));
  process.on("unhandledRejection", (error) => void finish(1, red(`demo failed: ${(error as Error)?.message ?? String(error)}`)));

  console.log(bold("Pilot demo: agents, a rendezvous, HTTP and A2A over the encrypted overlay, and the gateway for plain clients"));
  console.log(dim(`DEMO=${demo.dir}  (temporary; removed at the end)\n`));

  for (const [i, step] of steps.entries()) {
    const label = `[${i + 1}/${steps.length}]`;
    console.log(`${bold(label)} ${bold(step.title)}`);
    const t = performance.now();
    try {
      await withTimeout(step.run(demo), STEP_TIMEOUT_MS, `step ${i + 1}`);
    } catch (error) {
      if (interrupted) return finishing!;
      const e = error as Error & { hint?: string; code?: string };
      const code = e.code && !(e instanceof DemoError) && !e.message.startsWith(e.code) ? `${e.code}: ` : "";
      console.log(`${INDENT}${red("✗ failed:")} ${code}${e.message}`);
      if (e.hint) console.log(`${INDENT}${dim(`hint: ${e.hint}`)}`);
      for (const p of demo.processes) {
        const tail = p.logTail();
        if (tail.length === 0) continue;
        console.log(`${INDENT}${dim(`last lines of ${p.name}'s log:`)}`);
        for (const line of tail) console.log(`${INDENT}  ${dim(line)}`);
      }
      return finish(1, red(`demo failed at step ${i + 1} (${step.title}): ${e.message}`));
    }
    console.log(`${INDENT}${green("✓")} ${dim(ms(performance.now() - t))}\n`);
  }
  const total = performance.now() - began;
  return finish(0, green(`✓ demo complete: ${steps.length} steps passed in ${ms(total)}`));
}

await main();
