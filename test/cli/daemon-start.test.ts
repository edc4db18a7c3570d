/**
 * `pilot daemon start` when it cannot register: one clear error naming the
 * registry address it tried and the command that starts one, the right code,
 * no log path and no repetition; a refusal by the registry's per-address
 * limits names the `pilot rendezvous` option that raises it.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ROOT, pilotCommand, runPilot } from "../support/cluster.ts";
import { RegistryError } from "../../src/registry/client.ts";
import { registryConnectError } from "../../src/daemon/run.ts";

const dir = mkdtempSync("/tmp/pilot-cli-start-");
const rendezvous = new Set<Bun.Subprocess>();
const daemonPids = new Set<number>();

afterAll(async () => {
  for (const pid of daemonPids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  for (const r of rendezvous) r.kill("SIGTERM");
  await Promise.all([...rendezvous].map((r) => r.exited));
  rmSync(dir, { recursive: true, force: true });
});

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** `pilot rendezvous` on free 127.0.0.1 ports with extra options; resolves with its registry and beacon. */
async function startRendezvous(name: string, extra: string[]): Promise<{ registry: string; beacon: string }> {
  const [cmd, ...base] = pilotCommand();
  const proc = Bun.spawn([cmd!, ...base, "rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", ...extra], {
    cwd: ROOT,
    env: { ...process.env, PILOT_HOME: join(dir, name) },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "ignore",
  });
  rendezvous.add(proc);
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 15_000;
  while (!text.includes("\n")) {
    if (Date.now() > deadline) throw new Error("the rendezvous did not start");
    const { value, done } = await reader.read();
    if (done) throw new Error("the rendezvous exited");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return JSON.parse(text.split("\n")[0]!).data;
}

async function startDaemon(home: string, rv: { registry: string; beacon: string }, json = true) {
  const r = await runPilot(["daemon", "start", ...(json ? ["--json"] : []), "--registry", rv.registry, "--beacon", rv.beacon, "--listen", "127.0.0.1:0"], { env: { PILOT_HOME: join(dir, home) } });
  if (r.code === 0 && json) daemonPids.add(r.json.data.pid);
  return r;
}

describe("daemon start without a reachable registry", () => {
  test("text: one error line with the address tried and the command that starts a rendezvous, one hint, nothing else", async () => {
    const port = await closedPort();
    const started = performance.now();
    const r = await runPilot(["daemon", "start", "--registry", `127.0.0.1:${port}`], { env: { PILOT_HOME: join(dir, "no-registry-text") } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `error: cannot reach the registry at 127.0.0.1:${port} (connection refused); start one with: pilot rendezvous --registry-addr 127.0.0.1:${port}\n` +
        "hint:  or use a running one: pilot daemon start --registry HOST:PORT (also PILOT_REGISTRY, or pilot config --set registry=HOST:PORT)\n",
    );
    // A refused connection is known at once (a couple of quick retries, not the 15 s start-up timeout).
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  test("--json: one registry_unavailable envelope on stderr", async () => {
    const port = await closedPort();
    const r = await runPilot(["daemon", "start", "--json", "--registry", `127.0.0.1:${port}`], { env: { PILOT_HOME: join(dir, "no-registry-json") } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.json.code).toBe("registry_unavailable");
    expect(r.json.message).toContain(`127.0.0.1:${port}`);
    expect(r.json.message).toContain("pilot rendezvous");
    expect(r.json.hint).not.toContain("pilot.log");
  });

  test("--foreground says the same", async () => {
    const port = await closedPort();
    const r = await runPilot(["daemon", "start", "--foreground", "--json", "--registry", `127.0.0.1:${port}`], { env: { PILOT_HOME: join(dir, "no-registry-fg") } });
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("registry_unavailable");
    expect(r.json.message).toBe(`cannot reach the registry at 127.0.0.1:${port} (connection refused); start one with: pilot rendezvous --registry-addr 127.0.0.1:${port}`);
  });

  test("the default registry address: the command is plain `pilot rendezvous`", () => {
    const e = registryConnectError(new RegistryError("connection_failed", "cannot reach the registry at 127.0.0.1:9000: 127.0.0.1:9000: connect ECONNREFUSED 127.0.0.1:9000"), { host: "127.0.0.1", port: 9000 });
    expect(e.message).toBe("cannot reach the registry at 127.0.0.1:9000 (connection refused); start one with: pilot rendezvous");
    const slow = registryConnectError(new RegistryError("connection_failed", "cannot reach the registry at 203.0.113.5:9000: no hello from 203.0.113.5:9000 within 5000 ms"), { host: "203.0.113.5", port: 9000 });
    expect(slow.message).toBe("cannot reach the registry at 203.0.113.5:9000 (no answer); start one with: pilot rendezvous");
  });
});

describe("daemon start refused by the registry's per-address limits", () => {
  test("new registrations per address: the error names pilot rendezvous --registration-rate", async () => {
    const rv = await startRendezvous("rv-registrations", ["--registration-rate", "1"]);
    const first = await startDaemon("reg-1", rv);
    expect(first.code).toBe(0);
    const second = await startDaemon("reg-2", rv);
    expect(second.code).toBe(1);
    expect(second.json.code).toBe("rate_limited");
    expect(second.json.message).toBe(`the registry at ${rv.registry} refused to register a new node: too many new nodes from this address in the last minute`);
    expect(second.json.hint).toContain("pilot rendezvous --registration-rate N");
    // The node already registered is not new: it restarts without spending the budget.
    const again = await runPilot(["daemon", "stop", "--json"], { env: { PILOT_HOME: join(dir, "reg-1") } });
    expect(again.code).toBe(0);
    expect((await startDaemon("reg-1", rv)).code).toBe(0);
    // Text mode: the same, as one error line and one hint.
    const text = await startDaemon("reg-3", rv, false);
    expect(text.code).toBe(1);
    expect(text.stderr.split("\n").filter(Boolean)).toEqual([
      `error: the registry at ${rv.registry} refused to register a new node: too many new nodes from this address in the last minute`,
      "hint:  wait a minute and retry; whoever runs the rendezvous can raise the limit with: pilot rendezvous --registration-rate N (new nodes per source IP per minute, default 10)",
    ]);
  });

  test("open connections per address: the error names pilot rendezvous --max-connections-per-ip", async () => {
    const rv = await startRendezvous("rv-connections", ["--max-connections-per-ip", "1"]);
    expect((await startDaemon("conn-1", rv)).code).toBe(0);
    const second = await startDaemon("conn-2", rv);
    expect(second.code).toBe(1);
    expect(second.json.code).toBe("rate_limited");
    expect(second.json.message).toBe(`the registry at ${rv.registry} refused the connection: too many open connections from this address`);
    expect(second.json.hint).toContain("pilot rendezvous --max-connections-per-ip N");
  });
});

describe("daemon start when its --listen address cannot be used", () => {
  test("a UDP port another program holds: already_exists (exit 1), naming the address, with a hint", async () => {
    const holder = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
    try {
      const home = join(dir, "listen-taken");
      const r = await runPilot(["daemon", "start", "--foreground", "--json", "--listen", `127.0.0.1:${holder.port}`, "--registry", `127.0.0.1:${await closedPort()}`, "--beacon", "off"], { env: { PILOT_HOME: home } });
      expect(r.code).toBe(1);
      expect(r.json?.code).toBe("already_exists");
      expect(r.json?.message).toContain(`cannot bind the tunnel's UDP socket to 127.0.0.1:${holder.port}`);
      expect(r.json?.hint).toBe("pick another --listen address or port");
    } finally {
      holder.close();
    }
  });

  test("an address that is not this machine's: invalid_argument (exit 2)", async () => {
    const home = join(dir, "listen-foreign");
    // 192.0.2.1 (TEST-NET-1) is on no interface here; binding it fails before any packet is sent.
    const r = await runPilot(["daemon", "start", "--foreground", "--json", "--listen", "192.0.2.1:4000", "--registry", `127.0.0.1:${await closedPort()}`, "--beacon", "off"], { env: { PILOT_HOME: home } });
    expect(r.json?.code).toBe("invalid_argument");
    expect(r.code).toBe(2);
  });
});
