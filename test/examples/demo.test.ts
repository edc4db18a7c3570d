/**
 * `bun run demo`, run for real: every step passes, and whatever way it ends
 * (success, a failing step, Ctrl-C) the processes it started are gone and
 * its temporary directory is removed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alive, ROOT } from "../support/cluster.ts";
import { Spawned, spawnIn, stopAll } from "./support.ts";

/** The pids the demo printed (rendezvous and daemons): killed at the end if a failed test left any. */
const printedPids = new Set<number>();
const scratch: string[] = [];

/**
 * The demo maps agents through the gateway. Tests keep the host's loopback
 * clean (the default 10.4.0.0/16 is exercised only inside a test's own
 * namespace), so every run here uses a 127.x subnet.
 */
const DEMO_ENV = { PILOT_DEMO_SUBNET: `127.${32 + (process.pid % 32)}.0.0/16` };

afterAll(async () => {
  await stopAll();
  for (const pid of printedPids) if (alive(pid)) process.kill(pid, "SIGKILL");
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** Checks what every run must leave behind: nothing. */
function expectCleanedUp(run: Spawned): void {
  const dir = /^DEMO=(\S+)/m.exec(run.stdout)?.[1];
  expect(dir).toBeDefined();
  expect(existsSync(dir!)).toBe(false);
  const pids = [...run.stdout.matchAll(/\bpid (\d+)/g)].map((m) => Number(m[1]));
  for (const pid of pids) printedPids.add(pid);
  for (const pid of pids) expect({ pid, alive: alive(pid) }).toEqual({ pid, alive: false });
}

describe("bun run demo", () => {
  test("runs every step, prints what ran and what came back, exits 0 and leaves nothing behind", async () => {
    const started = performance.now();
    const run = spawnIn([process.execPath, "run", "demo"], DEMO_ENV);
    const code = await run.exitCode(60_000);
    const elapsed = performance.now() - started;
    if (code !== 0) throw new Error(`demo exited ${code}:\n${run.output}`);
    const out = run.stdout;

    const steps = Number(/^\[1\/(\d+)\]/m.exec(out)?.[1]);
    expect(steps).toBeGreaterThanOrEqual(8);
    const headers = out.split("\n").filter((l) => /^\[\d+\/\d+\] /.test(l));
    expect(headers.map((l) => l.slice(0, l.indexOf("]") + 1))).toEqual(Array.from({ length: steps }, (_, i) => `[${i + 1}/${steps}]`));
    // Each step reports success with its duration, and none failed.
    expect(out.match(/^ {6}✓ [\d.]+ m?s$/gm)?.length).toBe(steps);
    expect(out).not.toContain("✗");

    // The things the demo is about, as they came back.
    expect(out).toMatch(/\$ PILOT_HOME=\$DEMO\/rendezvous pilot rendezvous --registry-addr 127\.0\.0\.1:0/);
    expect(out).toMatch(/→ registry 127\.0\.0\.1:\d+ \(tcp\), beacon 127\.0\.0\.1:\d+ \(udp\), pid \d+/);
    const addresses = [...out.matchAll(/→ daemon ([ab]): address (\S+), tunnel udp 127\.0\.0\.1:\d+, pid \d+/g)].map((m) => [m[1], m[2]]);
    expect(addresses.map(([id]) => id)).toEqual(["a", "b"]);
    const addressA = addresses[0]![1]!;
    expect(out).toContain("$ PILOT_HOME=$DEMO/a pilot set-hostname agent-a --json\n      → node ");
    expect(out).toContain("$ PILOT_HOME=$DEMO/b pilot find agent-a --json\n      → not_found: ");
    expect(out).toContain(`$ PILOT_HOME=$DEMO/b pilot handshake ${addressA} "demo: agent-b wants to call agent-a's HTTP API" --json\n      → request sent to ${addressA}: pending`);
    expect(out).toContain(`reason: "demo: agent-b wants to call agent-a's HTTP API"`);
    expect(out).toMatch(/\$ PILOT_HOME=\$DEMO\/a pilot approve agent-b --json\n {6}→ \S+: trusted/);
    expect(out).toContain(`→ agent-b trusts agent-a (${addressA})`);
    expect(out).toContain(`→ 200 {"status":"healthy","agent":"${addressA}","version":"1.0.0"}`);
    expect(out).toMatch(/→ 200 \{"message":"hello from agent-b","sent_at":"[^"]+"\}/);
    expect(out).toMatch(/agent-a's server saw: POST \/api\/echo from \S+:\d+/);
    expect(out.match(/→ reply from \S+: seq=\d rtt=[\d.]+ ms/g)?.length).toBe(3);
    expect(out).toContain("3/3 replies, loss 0%");
    // The gateway: plain curl to a local IP reaches agent-a's service.
    expect(out).toMatch(new RegExp(`→ Gateway active: ${addressA.replace(/\./g, "\\.")} -> 127\\.\\d+\\.0\\.1:\\d+`));
    expect(out).toMatch(/\$ curl http:\/\/127\.\d+\.0\.1(:\d+)?\/api\/status\n {6}→ \{"status":"healthy"/);
    // A2A: discovered by tag, mapped, and called by the official SDK client through the gateway.
    expect(out).toContain("skills Sentiment Analysis, Data Summarization");
    expect(out).toContain("(added to the running gateway)");
    expect(out).toMatch(/→ send: +task \S+ TASK_STATE_COMPLETED: report: Sentiment: 73% positive/);
    expect(out).toContain("→ all A2A calls succeeded");
    expect(out).toMatch(/✓ demo complete: \d+ steps passed in [\d.]+ m?s/);
    expect(out).not.toContain("\x1b["); // NO_COLOR is honoured
    expect(run.stderr).not.toMatch(/error/i);
    expectCleanedUp(run);
    // "Quick": a few seconds, including Bun starting three processes and stopping them.
    expect(elapsed).toBeLessThan(15_000);
  }, 60_000); // the demo starts a dozen processes: on a loaded machine more than the default 5 s

  // What a newcomer runs: `bun run demo` as an ordinary user, no sudo (a 127.x subnet, the gateway on
  // port 8080). Run as root, this test makes a throwaway user and removes it afterwards.
  const canSwitchUser = process.getuid?.() === 0 && Bun.which("useradd") !== null && Bun.which("runuser") !== null;
  test.skipIf(!canSwitchUser)("passes as an unprivileged user too", async () => {
    const user = `pilot-demo-${process.pid}`;
    const dir = mkdtempSync(join(tmpdir(), "pilot-demo-user-"));
    scratch.push(dir);
    chmodSync(dir, 0o755);
    const home = join(dir, "home");
    const added = Bun.spawnSync(["useradd", "--system", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin", user]);
    if (added.exitCode !== 0) throw new Error(`useradd failed: ${added.stderr.toString()}`);
    try {
      // The user reads the checkout in place when it may (a copy of it otherwise), and its own copy of bun.
      const readable = Bun.spawnSync(["runuser", "-u", user, "--", "test", "-r", join(ROOT, "node_modules/cac/package.json")]).exitCode === 0;
      const checkout = readable ? ROOT : join(dir, "pilot");
      if (!readable) {
        for (const part of ["package.json", "tsconfig.json", "bunfig.toml", "node_modules", "src", "scripts", "examples"]) {
          if (existsSync(join(ROOT, part))) cpSync(join(ROOT, part), join(checkout, part), { recursive: true });
        }
      }
      mkdirSync(join(dir, "bin"));
      mkdirSync(home);
      cpSync(process.execPath, join(dir, "bin", "bun"));
      chmodSync(join(dir, "bin", "bun"), 0o755);
      Bun.spawnSync(["chown", "-R", user, home, ...(readable ? [] : [checkout])]);
      const env = ["HOME=" + home, `PATH=${join(dir, "bin")}:/usr/local/bin:/usr/bin:/bin`, "TMPDIR=/tmp", "NO_COLOR=1"];
      const run = new Spawned(
        Bun.spawn(["runuser", "-u", user, "--", "env", "-i", ...env, "bun", "run", "demo"], { cwd: checkout, stdin: "ignore", stdout: "pipe", stderr: "pipe" }),
      );
      const code = await run.exitCode(60_000);
      if (code !== 0) throw new Error(`demo as ${user} exited ${code}:\n${run.output}`);
      expect(run.stdout).toContain("--ports 8080 agent-a");
      expect(run.stdout).toContain("skills Sentiment Analysis, Data Summarization");
      expect(run.stdout).toContain("→ all A2A calls succeeded");
      expect(run.stdout).toMatch(/✓ demo complete: \d+ steps passed/);
      expectCleanedUp(run);
    } finally {
      Bun.spawnSync(["userdel", user]);
    }
    expect(Bun.spawnSync(["id", user]).exitCode).not.toBe(0);
  }, 90_000); // the demo, as another user, with its own copy of bun

  test("a step that fails: exit 1 with the reason and the logs, and everything started so far is stopped", async () => {
    // A `pilot` whose daemons fail to start (the rendezvous is the real one).
    const dir = mkdtempSync(join(tmpdir(), "pilot-demo-test-"));
    scratch.push(dir);
    const fake = join(dir, "pilot");
    writeFileSync(
      fake,
      `#!/bin/sh
case "$1" in daemon) echo '{"status":"error","code":"internal","message":"simulated start-up failure","hint":"nothing to do"}' >&2; exit 1;; esac
exec "${process.execPath}" "${join(ROOT, "src/cli/main.ts")}" "$@"
`,
    );
    chmodSync(fake, 0o755);
    const run = spawnIn([process.execPath, join(ROOT, "scripts/demo.ts")], { ...DEMO_ENV, PILOT_BIN: fake });
    expect(await run.exitCode(30_000)).toBe(1);
    expect(run.stdout).toContain("[1/");
    // Both daemons start at once; either may be the one reported.
    expect(run.stdout).toMatch(/✗ failed: daemon [ab] failed to start: simulated start-up failure\n/);
    expect(run.stdout).toContain("hint: nothing to do");
    expect(run.stdout).toMatch(/last lines of rendezvous's log:\n.*rendezvous: /);
    expect(run.stdout).toMatch(/→ rendezvous \(pid \d+\): stopped/);
    expect(run.stdout).toMatch(/demo failed at step 2 \(Start two daemons[^)]*\): daemon [ab] failed to start: simulated start-up failure\n$/);
    expectCleanedUp(run);
  }, 30_000);

  test("Ctrl-C (SIGINT) while daemons start: it stops them and the rendezvous, removes its directory, exits 130", async () => {
    const run = spawnIn([process.execPath, join(ROOT, "scripts/demo.ts")], DEMO_ENV);
    await run.waitFor(/^\[2\/\d+\] /m);
    run.proc.kill("SIGINT");
    expect(await run.exitCode(30_000)).toBe(130);
    expect(run.stdout).toContain("SIGINT received: stopping the demo");
    expect(run.stdout).toMatch(/→ rendezvous \(pid \d+\): stopped/);
    expect(run.stdout).toContain("demo interrupted (SIGINT); everything it started was stopped");
    expect(run.stdout).not.toContain("demo complete");
    expectCleanedUp(run);
  }, 30_000);
});
