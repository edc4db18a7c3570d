/**
 * `sudo pilotctl gateway start --ports 80 AGENT` as a user would type it,
 * after `pilot install`:
 *
 * - a temporary unprivileged user (useradd, home in a temp dir; userdel in
 *   afterAll, even on failure) runs a daemon in its default ~/.pilot;
 * - `pilot install --prefix TMP` (the launcher, from source; these cases
 *   never touch the machine's /usr/local);
 * - root runs TMP/bin/pilotctl with the environment sudo leaves (env -i:
 *   PATH, HOME=/root, SUDO_USER, no PILOT_HOME), inside a network namespace
 *   for the default 10.4.0.0/16 (sudo's environment reproduced, so that
 *   this part runs where sudo is not installed);
 * - the gateway finds the user's daemon and home, says which home it used,
 *   leaves nothing root-owned in it, and the user lists and stops it
 *   without root.
 *
 * One case runs the real sudo, when it is installed (CI installs it): `pilot
 * install` into /usr/local/bin (only if no pilot or pilotctl is there yet;
 * uninstalled in a finally and again in afterAll), a sudoers drop-in that
 * lets the temporary user run /usr/local/bin/pilotctl as root (checked with
 * visudo, removed likewise), then root `sudo -u USER` runs, with a PATH
 * without /usr/local/bin, `sudo -n pilotctl gateway start ...`: only sudo's
 * secure_path can find pilotctl. Skipped, loudly, without sudo.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type Driver } from "../../src/driver/index.ts";
import { statusService } from "../../examples/http-server.ts";
import { pilotCommand, ROOT, runCommand, startCluster, type Cluster } from "../support/cluster.ts";
import { alive, IS_ROOT } from "./support.ts";

const NS = `pilot-gws-${process.pid}`;
const USER = `pgw${process.pid % 100000}`;

function unavailable(): string | null {
  if (!IS_ROOT) return "not root";
  for (const tool of ["useradd", "userdel", "setpriv", "ip", "getent"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `no ${tool}`;
  }
  if (spawnSync("getent", ["passwd", USER]).status === 0) return `user ${USER} exists already`;
  return null;
}

const skipReason = unavailable();
if (skipReason) console.warn(`\n*** test/gateway/sudo.test.ts SKIPPED: ${skipReason}. sudo pilotctl gateway start (SUDO_USER's home) is NOT tested. ***\n`);

/** The real sudo's case: installs into /usr/local/bin and adds a sudoers drop-in, both removed afterwards. */
const SYSTEM_BIN = "/usr/local/bin";
const SUDOERS = `/etc/sudoers.d/pilot-test-${process.pid}`;

function realSudoUnavailable(): string | null {
  if (skipReason) return skipReason;
  for (const tool of ["sudo", "visudo"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `no ${tool} (Debian: apt-get install sudo)`;
  }
  if (!existsSync("/etc/sudoers.d")) return "no /etc/sudoers.d";
  for (const name of ["pilot", "pilotctl"]) if (existsSync(join(SYSTEM_BIN, name))) return `${SYSTEM_BIN}/${name} exists already (not this test's to replace)`;
  return null;
}

const realSudoSkip = realSudoUnavailable();
if (realSudoSkip && !skipReason) {
  console.warn(`\n*** test/gateway/sudo.test.ts: the real-sudo case SKIPPED: ${realSudoSkip}. sudo's secure_path finding pilotctl after pilot install is NOT tested. ***\n`);
}
let installedSystemWide = false;

/** `pilot uninstall` from /usr/local/bin and the sudoers drop-in, if this test put them there. */
async function removeSystemInstall(): Promise<void> {
  if (existsSync(SUDOERS)) rmSync(SUDOERS, { force: true });
  if (installedSystemWide) {
    await exec([process.execPath, join(ROOT, "src/cli/main.ts"), "uninstall", "--json"]);
    installedSystemWide = false;
  }
}

const dir = skipReason ? "" : mkdtempSync("/tmp/pilot-gw-sudo-");
const home = dir ? join(dir, "home", USER) : "";
const prefix = dir ? join(dir, "prefix") : "";
let c: Cluster | null = null;
let agent: Driver | null = null;
let uid = 0;
let gid = 0;
let userAdded = false;
let nsAdded = false;
const pids = new Set<number>();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

/**
 * Runs argv to the end without blocking this process's event loop: the
 * agent's HTTP service is served from here, so a synchronous spawn would
 * stall every request the command makes through the gateway.
 */
function exec(argv: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<Run> {
  return runCommand(argv, { cwd: options.cwd, env: options.env });
}

/** What `sudo CMD` runs: root, in the namespace, with sudo's reset environment. */
function asSudo(args: string[]): Promise<Run> {
  const env = ["PATH=" + `${prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, "HOME=/root", "USER=root", "LOGNAME=root", `SUDO_USER=${USER}`, `SUDO_UID=${uid}`, `SUDO_GID=${gid}`, "SUDO_COMMAND=pilotctl"];
  return exec(["ip", "netns", "exec", NS, "env", "-i", ...env, "pilotctl", ...args], { cwd: "/" });
}

/** The user, without sudo: their own HOME, no PILOT_HOME. */
function asUser(args: string[]): Promise<Run> {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, USER, LOGNAME: USER };
  return exec(["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "--", ...pilotCommand(), ...args], { env });
}

function curlInNs(url: string): Promise<Run> {
  return exec(["ip", "netns", "exec", NS, "curl", "-sS", "-i", "--max-time", "10", url]);
}

function aliases(): string[] {
  const r = spawnSync("ip", ["-n", NS, "-4", "-o", "addr", "show", "dev", "lo"], { encoding: "utf8" });
  return [...r.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/g)].map((m) => `${m[1]}/${m[2]}`).filter((a) => !a.startsWith("127."));
}

/** Every path under `root` whose owner is not `owner`. */
function notOwnedBy(root: string, owner: number): string[] {
  const found: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    if (st.uid !== owner) found.push(`${p} (uid ${st.uid})`);
    if (st.isDirectory()) for (const name of readdirSync(p)) walk(join(p, name));
  };
  walk(root);
  return found;
}

beforeAll(async () => {
  if (skipReason) return;
  const add = spawnSync("useradd", ["--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin", "--user-group", USER], { encoding: "utf8" });
  if (add.status !== 0) throw new Error(`useradd failed: ${add.stderr}`);
  userAdded = true;
  const entry = spawnSync("getent", ["passwd", USER], { encoding: "utf8" }).stdout.trim().split(":");
  uid = Number(entry[2]);
  gid = Number(entry[3]);
  chmodSync(dir, 0o755);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  chmodSync(join(dir, "home"), 0o755);
  chownSync(home, uid, gid);

  const ns = spawnSync("ip", ["netns", "add", NS], { encoding: "utf8" });
  if (ns.status !== 0) throw new Error(`ip netns add failed: ${ns.stderr}`);
  nsAdded = true;
  spawnSync("ip", ["-n", NS, "link", "set", "lo", "up"]);

  // The agent: a daemon of the test cluster on 127.0.0.1, serving HTTP on Pilot port 80.
  c = await startCluster({ daemons: [{ name: "agent", hostname: "sudo-agent" }] });
  agent = await connect({ home: c.daemon("agent").home });
  await agent.serveHttp(80, statusService(agent.address));

  // The user's daemon, in ~/.pilot (no PILOT_HOME anywhere).
  const d = await asUser(["daemon", "start", "--registry", c.registry, "--beacon", c.beacon, "--listen", "127.0.0.1:0", "--hostname", `${USER}-laptop`, "--json"]);
  if (d.code !== 0) throw new Error(`the user's daemon did not start: ${d.stderr}`);
  pids.add(d.json.data.pid);
  expect((await asUser(["handshake", String(c.daemon("agent").nodeId), "sudo gateway test", "--json"])).code).toBe(0);
  expect((await c.pilot("agent", ["approve", String(d.json.data.node_id)])).code).toBe(0);
  for (let i = 0; i < 100 && !((await asUser(["trust", "--json"])).json?.data?.trusted?.length > 0); i++) await Bun.sleep(50);

  const install = await exec([process.execPath, join(ROOT, "src/cli/main.ts"), "install", "--prefix", prefix, "--json"]);
  if (install.code !== 0) throw new Error(`install failed: ${install.stderr}`);
}, 60_000);

afterAll(async () => {
  if (!dir) return;
  await removeSystemInstall();
  // A gateway this test started, then the user's daemon: by pid.
  const ledger = join(home, ".pilot", "gateway", "state.json");
  try {
    const pid = JSON.parse(await Bun.file(ledger).text()).pid;
    if (typeof pid === "number" && alive(pid)) pids.add(pid);
  } catch {
    // none left
  }
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  for (let i = 0; i < 100 && [...pids].some(alive); i++) await Bun.sleep(50);
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
  await agent?.close().catch(() => {});
  await c?.stop();
  if (nsAdded) spawnSync("ip", ["netns", "del", NS]);
  if (userAdded) spawnSync("userdel", [USER]);
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe.skipIf(skipReason !== null)("sudo pilotctl gateway start, after pilot install", () => {
  test("root finds the user's daemon and home through SUDO_USER and says so; curl http://10.4.0.1/ works", async () => {
    const r = await asSudo(["gateway", "start", "--ports", "80", "sudo-agent"]);
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout.trim()).toBe(`Gateway active: ${agent!.address} -> 10.4.0.1:80`);
    expect(r.stderr).toContain(`using PILOT_HOME ${home}/.pilot (the home of ${USER}, who ran sudo)`);
    expect(aliases()).toEqual(["10.4.0.1/32"]);

    const res = await curlInNs("http://10.4.0.1/api/status");
    expect(res.stdout).toStartWith("HTTP/1.1 200");
    expect(res.stdout).toContain(`"agent":"${agent!.address}"`);

    // --json says it too (a second start adds to the running gateway).
    const j = await asSudo(["gateway", "start", "--ports", "8080", "sudo-agent", "--json"]);
    expect(j.json.data).toMatchObject({ started: false, pilot_home: `${home}/.pilot`, pilot_home_from: "sudo", sudo_user: USER });
    pids.add(j.json.data.pid);
    expect(lstatSync(`/proc/${j.json.data.pid}`).uid).toBe(0); // the gateway runs as root
  }, 30_000);

  test("nothing in the user's ~/.pilot is root's; the user lists, maps and stops the gateway without sudo", async () => {
    expect(notOwnedBy(join(home, ".pilot"), uid)).toEqual([]);
    expect(existsSync(join(home, ".pilot", "gateway", "gateway.sock"))).toBe(true);

    const list = await asUser(["gateway", "list", "--json"]);
    expect(list.json.data.mappings).toMatchObject([{ local_ip: "10.4.0.1", hostname: "sudo-agent", ports: [80, 8080] }]);
    expect((await asUser(["daemon", "status", "--json"])).code).toBe(0);

    const stop = await asUser(["gateway", "stop", "--json"]);
    expect(stop.json.data).toMatchObject({ removed_aliases: ["10.4.0.1"], forced: false });
    expect(aliases()).toEqual([]);
    expect(notOwnedBy(join(home, ".pilot"), uid)).toEqual([]);
  }, 30_000);

  test.skipIf(realSudoSkip !== null)("the real sudo: after pilot install into /usr/local/bin, the user's `sudo pilotctl gateway start` finds pilotctl through secure_path", async () => {
    try {
      for (const name of ["pilot", "pilotctl"]) if (existsSync(join(SYSTEM_BIN, name))) throw new Error(`${SYSTEM_BIN}/${name} appeared since this file was loaded: not this test's to replace`);
      const install = await exec([process.execPath, join(ROOT, "src/cli/main.ts"), "install", "--json"]);
      installedSystemWide = install.code === 0; // from here on, afterAll uninstalls even if this fails halfway
      expect({ code: install.code, stderr: install.code === 0 ? "" : install.stderr }).toEqual({ code: 0, stderr: "" });
      expect(install.json.data).toMatchObject({ pilot: `${SYSTEM_BIN}/pilot`, pilotctl: `${SYSTEM_BIN}/pilotctl`, kind: "launcher", replaced: false });
      writeFileSync(SUDOERS, `${USER} ALL=(root) NOPASSWD: ${SYSTEM_BIN}/pilotctl\n`, { mode: 0o440 });
      const check = await exec(["visudo", "-c", "-f", SUDOERS]);
      expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: "" });

      // The user's own PATH has no /usr/local/bin: only sudo's secure_path can find pilotctl.
      const asUserViaSudo = (argv: string[]) =>
        exec(["ip", "netns", "exec", NS, "sudo", "-u", USER, "--", "env", "-i", `HOME=${home}`, `USER=${USER}`, `LOGNAME=${USER}`, "PATH=/usr/bin:/bin", ...argv], { cwd: "/" });
      expect((await asUserViaSudo(["sh", "-c", "command -v pilotctl"])).code).not.toBe(0);
      const r = await asUserViaSudo(["sudo", "-n", "pilotctl", "gateway", "start", "--ports", "80", "sudo-agent"]);
      expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
      expect(r.stdout.trim()).toBe(`Gateway active: ${agent!.address} -> 10.4.0.1:80`);
      expect(r.stderr).toContain(`using PILOT_HOME ${home}/.pilot (the home of ${USER}, who ran sudo)`);
      const list = await asUser(["gateway", "list", "--json"]);
      pids.add(list.json.data.pid);
      expect(lstatSync(`/proc/${list.json.data.pid}`).uid).toBe(0); // root's gateway, for the user's daemon
      const res = await curlInNs("http://10.4.0.1/api/status");
      expect(res.stdout).toStartWith("HTTP/1.1 200");
      expect(res.stdout).toContain(`"agent":"${agent!.address}"`);

      const stop = await asUser(["gateway", "stop", "--json"]);
      expect(stop.json.data).toMatchObject({ removed_aliases: ["10.4.0.1"], forced: false });
      expect(notOwnedBy(join(home, ".pilot"), uid)).toEqual([]);
    } finally {
      await removeSystemInstall();
    }
    expect(existsSync(`${SYSTEM_BIN}/pilot`) || existsSync(`${SYSTEM_BIN}/pilotctl`) || existsSync(SUDOERS)).toBe(false);
  }, 60_000);

  test("without a daemon of the user's, the error says where root looked", async () => {
    const other = await asSudo(["gateway", "start", "--ports", "80", "sudo-agent", "--json"]);
    expect(other.code).toBe(0); // a daemon runs: sanity check for the next step
    pids.add(other.json.data.pid);
    expect((await asUser(["gateway", "stop", "--json"])).code).toBe(0);
    expect((await asUser(["daemon", "stop", "--json"])).code).toBe(0);
    const r = await asSudo(["gateway", "start", "--ports", "80", "sudo-agent", "--json"]);
    expect({ code: r.code, error: r.json?.code }).toEqual({ code: 1, error: "not_running" });
    expect(r.json.message).toBe(`the Pilot daemon is not running (looked in ${home}/.pilot (the home of ${USER}, who ran sudo))`);
    expect(notOwnedBy(join(home, ".pilot"), uid)).toEqual([]);
  }, 30_000);
});
