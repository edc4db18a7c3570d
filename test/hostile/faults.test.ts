/**
 * Faults: cutting a peer never depends on writing a file. With PILOT_HOME on a
 * full disk, `untrust` answers at once, the peer's open stream is cut, the
 * registry is told, and the trust file is written once there is room again.
 * (Before: `untrust` failed with ENOSPC after ~21 s and the stream kept flowing.)
 *
 * Needs root (a small tmpfs mounted for the daemon's home); skipped loudly otherwise.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../src/driver/index.ts";
import { alive, runPilot, startCluster, type Cluster } from "../support/cluster.ts";

const isRoot = process.getuid?.() === 0;
const mounts: string[] = [];
let cluster: Cluster | undefined;

afterAll(async () => {
  await cluster?.stop().catch(() => {});
  for (const m of mounts) spawnSync("umount", ["-l", m]);
  // stop() cannot remove the cluster's directory while the tmpfs is mounted inside it.
  if (cluster) rmSync(cluster.dir, { recursive: true, force: true });
});

describe.skipIf(!isRoot)("a full disk", () => {
  test("untrust cuts the peer at once and persists the trust file later", async () => {
    const c = (cluster = await startCluster());
    const home = join(c.dir, "full");
    mkdirSync(home, { recursive: true });
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", home]);
    if (mounted.status !== 0) throw new Error(`mount tmpfs failed: ${mounted.stderr}`);
    mounts.push(home);
    const full = await c.startDaemon({ name: "full", hostname: "full-disk" });
    const peer = await c.startDaemon({ name: "peer", hostname: "peer-ok" });
    await c.trust("full", "peer");

    // A stream from the peer into the full-disk node's echo, kept busy.
    const driver = await connect({ home: peer.home });
    const socket = await driver.dial("full-disk", 7);
    let echoed = 0;
    let closedWith: string | null = null;
    socket.on("data", (d: Buffer) => (echoed += d.length));
    socket.on("error", (e: any) => (closedWith = e.pilotCode ?? e.code));
    socket.on("close", () => (closedWith ??= "closed"));
    const ticker = setInterval(() => socket.writable && socket.write(Buffer.alloc(1024, 1)), 20);
    await Bun.sleep(300);
    expect(echoed).toBeGreaterThan(0);

    // Fill the disk.
    spawnSync("dd", ["if=/dev/zero", `of=${join(home, "filler")}`, "bs=64k"], { stdio: "ignore" });
    const t0 = performance.now();
    const r = await c.pilot("full", ["untrust", "peer-ok"]);
    const ms = performance.now() - t0;
    console.log(`untrust on a full disk: exit ${r.code} in ${ms.toFixed(0)} ms: ${r.stdout.trim() || r.stderr.trim()}`);
    expect(r.code).toBe(0);
    expect(ms).toBeLessThan(5000);
    const echoedAtCut = echoed;
    for (let i = 0; i < 50 && closedWith === null; i++) await Bun.sleep(50);
    console.log(`the peer's stream cut ${(performance.now() - t0).toFixed(0)} ms after untrust began: ${closedWith}`);
    expect(closedWith).not.toBeNull(); // the peer's stream was cut
    await Bun.sleep(300);
    expect(echoed).toBe(echoedAtCut); // and nothing flows any more
    clearInterval(ticker);
    const info = await c.pilot("full", ["info"]);
    expect(info.json.data.trust_file_error).toContain("ENOSPC");
    // The peer sees the revocation through the registry.
    const t = await c.pilot("peer", ["trust"]);
    expect(t.json.data.trusted.some((x: any) => x.hostname === "full-disk")).toBe(false);

    // Room again: the trust file catches up on its own.
    rmSync(join(home, "filler"));
    let persisted = false;
    for (let i = 0; i < 80 && !persisted; i++) {
      await Bun.sleep(100);
      try {
        const file = JSON.parse(readFileSync(join(home, "trust.json"), "utf8"));
        persisted = !file.trusted.some((x: any) => x.hostname === "peer-ok");
      } catch {}
    }
    expect(persisted).toBe(true);
    expect((await c.pilot("full", ["info"])).json.data.trust_file_error).toBeNull();
    driver.close();
  }, 60_000);
});

if (!isRoot) {
  console.warn("\n*** test/hostile/faults.test.ts SKIPPED: needs root for a tmpfs mount. Untrust on a full disk is NOT tested. ***\n");
  test.skip("untrust on a full disk (needs root)", () => {});
}

describe("a stale pid file", () => {
  test("whose pid now belongs to another process: start ignores it, stop never signals it", async () => {
    const c = await startCluster();
    const bystander = Bun.spawn(["sleep", "120"]);
    try {
      const home = join(c.dir, "stale");
      mkdirSync(home, { recursive: true, mode: 0o700 });
      writeFileSync(join(home, "pilot.pid"), `${bystander.pid}\n`);
      const env = { PILOT_HOME: home };
      // stop: nothing of ours runs here, so the bystander must not get a signal.
      const stop1 = await runPilot(["daemon", "stop", "--json"], { env });
      expect(stop1.code).toBe(1);
      expect(stop1.json.code).toBe("not_running");
      expect(bystander.exitCode).toBeNull();
      // start: the stale file does not block it.
      const d = await c.startDaemon({ name: "stale", hostname: "stale-pid" });
      expect(d.pid).not.toBe(bystander.pid);
      // The file is the daemon's now; point it at the bystander again, as a reused pid would.
      writeFileSync(join(home, "pilot.pid"), `${bystander.pid}\n`);
      // stop asks the socket who the daemon is, and stops that one.
      const stop2 = await runPilot(["daemon", "stop", "--json"], { env });
      expect(stop2.code).toBe(0);
      expect(stop2.json.data.pid).toBe(d.pid);
      await Bun.sleep(200);
      expect(bystander.exitCode).toBeNull(); // still alive: never signalled
    } finally {
      bystander.kill();
      await c.stop();
    }
  }, 60_000);

  test("whose pid is another home's running daemon (its socket silent here): start ignores it, stop never signals it", async () => {
    const c = await startCluster();
    try {
      const other = await c.startDaemon({ name: "other", hostname: "other-home" });
      const home = join(c.dir, "elsewhere");
      mkdirSync(home, { recursive: true, mode: 0o700 });
      writeFileSync(join(home, "pilot.pid"), `${other.pid}\n`);
      const env = { PILOT_HOME: home };
      // A `pilot daemon start --foreground` process, but not this home's: stop must leave it alone.
      const stop1 = await runPilot(["daemon", "stop", "--json"], { env });
      expect(stop1.code).toBe(1);
      expect(stop1.json.code).toBe("not_running");
      await Bun.sleep(200);
      expect(alive(other.pid)).toBe(true);
      expect((await c.pilot("other", ["daemon", "status", "--json"])).json.data.pid).toBe(other.pid);
      // start: the file does not block this home's own daemon.
      writeFileSync(join(home, "pilot.pid"), `${other.pid}\n`);
      const d = await c.startDaemon({ name: "elsewhere", hostname: "elsewhere-home" });
      expect(d.pid).not.toBe(other.pid);
      expect(readFileSync(join(home, "pilot.pid"), "utf8").trim()).toBe(String(d.pid));
      // This home's own daemon, hung (socket silent), is still recognised by the pid file it holds open.
      process.kill(d.pid, "SIGSTOP");
      try {
        const start2 = await runPilot(["daemon", "start", "--json", "--listen", "127.0.0.1:0"], { env });
        expect(start2.code).toBe(1);
        expect(start2.json.code).toBe("already_exists");
        expect(start2.json.message).toContain(`pid ${d.pid}`);
      } finally {
        process.kill(d.pid, "SIGCONT");
      }
      const stop2 = await runPilot(["daemon", "stop", "--json"], { env });
      expect(stop2.code).toBe(0);
      expect(stop2.json.data.pid).toBe(d.pid);
      expect(alive(other.pid)).toBe(true);
    } finally {
      await c.stop();
    }
  }, 60_000);
});
