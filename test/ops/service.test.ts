/**
 * `pilot daemon install|uninstall`: the generated systemd units (user and
 * system) and launchd plists, checked by the tools that read them
 * (`systemd-analyze verify`, Python's plistlib) where those are installed;
 * quoting of hostile paths; the CLI writing into a temporary directory
 * (--unit-dir, so no test ever touches the real service directories or the
 * service manager) and removing again; the plan of manager commands; and the
 * unit's command line really starting a daemon that logs to its file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, pilotCommand, runPilot, startCluster } from "../support/cluster.ts";
import { installCommands, launchdPlist, ServiceSpecError, shellLine, systemdExecWord, systemdQuote, systemdUnit, uninstallCommands, type ServiceSpec } from "../../src/cli/service-units.ts";

const dir = mkdtempSync("/tmp/pilot-ops-service-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const has = (tool: string) => spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;
const HAS_VERIFY = has("systemd-analyze");
const HAS_PLISTLIB = spawnSync("python3", ["-c", "import plistlib"]).status === 0;
if (!HAS_VERIFY) console.warn("SKIPPED: systemd-analyze is not installed; the units are not verified by systemd (apt-get install systemd)");
if (!HAS_PLISTLIB) console.warn("SKIPPED: python3 with plistlib is not installed; the plists are not parsed");

const BUN = process.execPath;
const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name: "pilot",
  scope: "user",
  command: [BUN, join(ROOT, "src/cli/main.ts"), "daemon", "start", "--foreground", "--log-to", "file"],
  home: "/var/lib/pilot-home",
  env: { PILOT_HOME: "/var/lib/pilot-home" },
  logFile: "/var/lib/pilot-home/pilot.log",
  ...over,
});

/** systemd-analyze verify on a unit text; "" when it is happy, else what it said. */
function verify(unit: string, scope: "user" | "system", name = "pilot.service"): string {
  const d = mkdtempSync(join(dir, "verify-"));
  writeFileSync(join(d, name), unit);
  const runtime = join(d, "runtime");
  mkdirSync(runtime, { mode: 0o700 });
  const r = spawnSync("systemd-analyze", [...(scope === "user" ? ["--user"] : []), "verify", join(d, name)], { encoding: "utf8", env: { ...process.env, XDG_RUNTIME_DIR: runtime, SYSTEMD_LOG_LEVEL: "warning" } });
  return r.status === 0 ? (r.stderr ?? "").trim() : `exit ${r.status}: ${r.stderr}`;
}

function plist(text: string): any {
  const f = join(mkdtempSync(join(dir, "plist-")), "p.plist");
  writeFileSync(f, text);
  const r = spawnSync("python3", ["-c", "import plistlib,json,sys; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))", f], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`plistlib refused it: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe("the systemd unit", () => {
  test("user scope: runs the daemon with PILOT_HOME, restarts on failure, starts with the user's session", () => {
    const unit = systemdUnit(spec());
    expect(unit).toContain(`ExecStart=${BUN} ${join(ROOT, "src/cli/main.ts")} daemon start --foreground --log-to file\n`);
    expect(unit).toContain("Environment=PILOT_HOME=/var/lib/pilot-home\n");
    expect(unit).toContain("Restart=on-failure\n");
    expect(unit).toContain("RestartPreventExitStatus=2\n");
    expect(unit).toContain("StartLimitIntervalSec=0\n");
    expect(unit).toContain("NoNewPrivileges=yes\n");
    expect(unit).toContain("WantedBy=default.target\n");
    // The sandboxing that needs a system manager is for system units only.
    expect(unit).not.toContain("ProtectSystem");
    expect(unit).not.toContain("User=");
    expect(unit).not.toContain("network-online");
  });

  test("system scope: hardened, PILOT_HOME the only writable path, started after the network", () => {
    const unit = systemdUnit(spec({ scope: "system", user: "alice" }));
    // A private /tmp would hide an executable that lives in /tmp (a checkout or bun there): then it is left out.
    const executableInTmp = [BUN, ROOT].some((p) => p.startsWith("/tmp/") || p.startsWith("/var/tmp/"));
    if (executableInTmp) expect(unit).not.toContain("PrivateTmp");
    else expect(unit).toContain("PrivateTmp=yes\n");
    for (const line of ["User=alice", "ProtectSystem=strict", "ReadWritePaths=/var/lib/pilot-home", "NoNewPrivileges=yes", "ProtectKernelTunables=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK", "After=network-online.target", "WantedBy=multi-user.target", "Restart=on-failure"]) {
      expect(unit).toContain(line + "\n");
    }
    // The JIT needs writable+executable memory.
    expect(unit).not.toContain("MemoryDenyWriteExecute");
    // A PILOT_HOME in /tmp would be hidden by a private /tmp.
    expect(systemdUnit(spec({ scope: "system", home: "/tmp/pilot-x", env: { PILOT_HOME: "/tmp/pilot-x" } }))).not.toContain("PrivateTmp");
    expect(systemdUnit(spec({ scope: "system", writablePaths: ["/run/pilot"] }))).toContain("ReadWritePaths=/var/lib/pilot-home /run/pilot\n");
  });

  test("hostile values: quoted for systemd, control characters refused", () => {
    expect(systemdQuote("plain-word_1.2:3")).toBe("plain-word_1.2:3");
    expect(systemdQuote("two words")).toBe('"two words"');
    expect(systemdQuote('say "hi"\\')).toBe('"say \\"hi\\"\\\\"');
    expect(systemdQuote("100%")).toBe('"100%%"');
    // $ is expanded in ExecStart= only.
    expect(systemdQuote("$HOME")).toBe('"$HOME"');
    expect(systemdExecWord("$HOME")).toBe('"$$HOME"');
    expect(systemdExecWord("100% sure")).toBe('"100%% sure"');
    for (const bad of [spec({ home: "/x\n[Service]\nExecStartPre=/bin/sh", env: { PILOT_HOME: "/x" } }), spec({ env: { PILOT_HOME: "/x\nUser=root" } }), spec({ command: [BUN, "--hostname", "a\rb"] }), spec({ name: "../evil" }), spec({ command: ["relative/pilot"] }), spec({ scope: "system", user: "root; rm" }), spec({ command: ["/opt/$x/pilot"] })]) {
      expect(() => systemdUnit(bad)).toThrow(ServiceSpecError);
      if (!bad.command[0]!.includes("$")) expect(() => launchdPlist(bad)).toThrow(ServiceSpecError);
    }
  });

  test.skipIf(!HAS_VERIFY)("systemd-analyze verify accepts both scopes, with a hostile-looking PILOT_HOME", () => {
    expect(verify(systemdUnit(spec()), "user")).toBe("");
    expect(verify(systemdUnit(spec({ scope: "system" })), "system")).toBe("");
    const odd = "/var/lib/pilot home/100% $HOME \"q\"";
    const unit = systemdUnit(spec({ scope: "system", home: odd, env: { PILOT_HOME: odd }, command: [BUN, join(ROOT, "src/cli/main.ts"), "daemon", "start", "--foreground", "--hostname", "agent-a"] }));
    expect(verify(unit, "system")).toBe("");
    // And systemd reads back what was meant: the escapes are systemd's own.
    expect(unit).toContain('Environment="PILOT_HOME=/var/lib/pilot home/100%% $HOME \\"q\\""');
    expect(unit).toContain('ReadWritePaths="/var/lib/pilot home/100%% $HOME \\"q\\""\n');
    // The executable's path as systemd reads it: verify finds the file only if the quoting is right.
    const odd2 = join(mkdtempSync(join(dir, "exe ")), "100% pilot");
    writeFileSync(odd2, "#!/bin/sh\n", { mode: 0o755 });
    expect(verify(systemdUnit(spec({ scope: "system", command: [odd2, "daemon", "start", "--tags", "$x", 'say "hi"'] })), "system")).toBe("");
    // A unit systemd refuses is reported (the check itself works).
    expect(verify(unit.replace(/ExecStart=\S+/, "ExecStart=/nonexistent/pilot"), "system")).toContain("nonexistent");
  });
});

describe("the launchd plist", () => {
  test.skipIf(!HAS_PLISTLIB)("parses, with the command, the environment and the log file", () => {
    const odd = "/Users/a & b/<pilot>";
    const p = plist(launchdPlist(spec({ scope: "system", user: "alice", home: odd, env: { PILOT_HOME: odd }, logFile: `${odd}/pilot.log`, command: [BUN, "daemon", "start", "--tags", "a,b"] })));
    expect(p).toEqual({
      Label: "pilot",
      ProgramArguments: [BUN, "daemon", "start", "--tags", "a,b"],
      EnvironmentVariables: { PILOT_HOME: odd },
      UserName: "alice",
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      ThrottleInterval: 5,
      ProcessType: "Background",
      StandardOutPath: `${odd}/pilot.log`,
      StandardErrorPath: `${odd}/pilot.log`,
    });
    expect(plist(launchdPlist(spec())).UserName).toBeUndefined();
  });
});

describe("the manager's commands", () => {
  const idle = { running: true, serviceActive: false, otherDaemonPid: null };
  test("systemd: reload and enable --now; a running service is restarted; a hand-started daemon is left alone", () => {
    expect(installCommands("systemd", "user", "pilot", "/f", idle, 1000)).toEqual({ commands: [{ argv: ["systemctl", "--user", "daemon-reload"] }, { argv: ["systemctl", "--user", "enable", "--now", "pilot.service"] }], starts: true });
    expect(installCommands("systemd", "system", "pilot", "/f", { ...idle, serviceActive: true }, 0).commands.map((c) => c.argv.join(" "))).toEqual(["systemctl daemon-reload", "systemctl enable pilot.service", "systemctl restart pilot.service"]);
    expect(installCommands("systemd", "system", "pilot", "/f", { ...idle, otherDaemonPid: 42 }, 0)).toMatchObject({ starts: false });
    expect(uninstallCommands("systemd", "user", "pilot", 1000)).toEqual({ before: [{ argv: ["systemctl", "--user", "disable", "--now", "pilot.service"], mayFail: true }], after: [{ argv: ["systemctl", "--user", "daemon-reload"] }] });
  });

  test("launchd: bootstrap into the user's gui domain or the system domain", () => {
    const plan = installCommands("launchd", "user", "pilot", "/Users/a/Library/LaunchAgents/pilot.plist", idle, 501);
    expect(plan.commands.map((c) => c.argv.join(" "))).toEqual(["launchctl enable gui/501/pilot", "launchctl bootout gui/501/pilot", "launchctl bootstrap gui/501 /Users/a/Library/LaunchAgents/pilot.plist"]);
    expect(plan.commands[1]!.mayFail).toBe(true);
    expect(uninstallCommands("launchd", "system", "pilot", 0).before[0]!.argv).toEqual(["launchctl", "bootout", "system/pilot"]);
  });
});

describe("pilot daemon install / uninstall", () => {
  const home = join(dir, "home");
  const env = { PILOT_HOME: home, PILOT_REGISTRY: "127.0.0.1:9555" };

  test("--dry-run prints the unit and writes nothing", async () => {
    const units = join(dir, "dry");
    const r = await runPilot(["daemon", "install", "--dry-run", "--user", "--unit-dir", units, "--hostname", "agent-a", "--json"], { env });
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({ file: join(units, "pilot.service"), manager: "systemd", scope: "user", written: false, started: false });
    expect(r.json.data.unit).toContain("--hostname agent-a");
    expect(existsSync(units)).toBe(false);
    const text = await runPilot(["daemon", "install", "--dry-run", "--system"], { env });
    expect(text.stdout).toStartWith("# would write /etc/systemd/system/pilot.service\n");
    expect(text.stdout).toContain("ProtectSystem=strict");
  });

  test("--user: writes the unit with the start options given, says what to run where no manager runs, and uninstall removes it", async () => {
    const units = join(dir, "user-units");
    const args = ["daemon", "install", "--user", "--unit-dir", units, "--hostname", "agent-a", "--tags", "nlp,analysis", "--public", "--no-files", "--open-services", "pubsub", "--log-level", "debug", "--json"];
    const r = await runPilot(args, { env });
    expect(r.code).toBe(0);
    const file = join(units, "pilot.service");
    const d = r.json.data;
    expect(d).toMatchObject({ file, manager: "systemd", scope: "user", name: "pilot", home, written: true, manager_running: false, started: false, running: false });
    const [cmd, ...base] = pilotCommand();
    expect(d.command).toEqual([cmd, ...base, "daemon", "start", "--foreground", "--hostname", "agent-a", "--public", "--tags", "nlp,analysis", "--log-level", "debug", "--no-files", "--open-services", "pubsub", "--log-to", "file"]);
    const unit = readFileSync(file, "utf8");
    expect(unit).toBe(d.unit);
    expect(unit).toContain(`Environment=PILOT_HOME=${home}\n`);
    // What the environment said at install time holds in the service too.
    expect(unit).toContain("Environment=PILOT_REGISTRY=127.0.0.1:9555\n");
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(statSync(home).isDirectory()).toBe(true);
    expect(d.next_steps).toEqual([`cp ${file} ${join(process.env.HOME ?? "", ".config/systemd/user/pilot.service")}`, "systemctl --user daemon-reload", "systemctl --user enable --now pilot.service"].map((s) => (process.env.XDG_CONFIG_HOME ? expect.any(String) : s)));
    expect(d.note).toContain("--unit-dir");
    if (HAS_VERIFY) expect(verify(unit, "user")).toBe("");

    const text = await runPilot(args.filter((a) => a !== "--json"), { env });
    expect(text.code).toBe(0);
    expect(text.stdout).toStartWith(`Wrote ${file}:\n  # Written by`);
    expect(text.stdout).toContain("systemctl --user enable --now pilot.service");
    expect(text.stdout).toContain("loginctl enable-linger");

    const u = await runPilot(["daemon", "uninstall", "--user", "--unit-dir", units, "--json"], { env });
    expect(u.code).toBe(0);
    expect(u.json.data).toMatchObject({ file, stopped: false, commands: [] });
    expect(existsSync(file)).toBe(false);
    const again = await runPilot(["daemon", "uninstall", "--user", "--unit-dir", units, "--json"], { env });
    expect(again.code).toBe(1);
    expect(again.json.code).toBe("not_found");
    expect(again.json.hint).toContain("pilot daemon uninstall --system");
  });

  test("--system as root into a directory of one's own; --name for a second home; launchd too", async () => {
    const units = join(dir, "system-units");
    const r = await runPilot(["daemon", "install", "--system", "--name", "pilot-analyst", "--unit-dir", units, "--json"], { env });
    expect(r.code).toBe(0);
    const unit = readFileSync(join(units, "pilot-analyst.service"), "utf8");
    expect(unit).toContain(`ReadWritePaths=${home}\n`);
    if (HAS_VERIFY) expect(verify(unit, "system", "pilot-analyst.service")).toBe("");
    const l = await runPilot(["daemon", "install", "--manager", "launchd", "--user", "--unit-dir", units, "--json"], { env });
    expect(l.code).toBe(0);
    expect(l.json.data.file).toBe(join(units, "pilot.plist"));
    if (HAS_PLISTLIB) expect(plist(readFileSync(join(units, "pilot.plist"), "utf8")).ProgramArguments).toEqual(l.json.data.command);
    expect((await runPilot(["daemon", "uninstall", "--manager", "launchd", "--user", "--unit-dir", units], { env })).code).toBe(0);
    expect((await runPilot(["daemon", "uninstall", "--system", "--name", "pilot-analyst", "--unit-dir", units], { env })).code).toBe(0);
  });

  test("--system without root: unauthorized, with the two ways out", async () => {
    const r = process.getuid?.() === 0
      ? await (async () => {
          // Drop to nobody for this one command (the checkout and bun are readable to all).
          const [cmd, ...base] = pilotCommand();
          const p = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "env", `PILOT_HOME=${join(dir, "nobody")}`, "HOME=/tmp", cmd!, ...base, "daemon", "install", "--system", "--json"], { cwd: "/", encoding: "utf8" });
          return { code: p.status, json: JSON.parse(p.stderr.trim().split("\n").pop()!) };
        })()
      : await runPilot(["daemon", "install", "--system", "--json"], { env });
    expect(r.code).toBe(1);
    expect(r.json.code).toBe("unauthorized");
    expect(r.json.message).toBe("installing a system service writes /etc/systemd/system and needs root");
    expect(r.json.hint).toContain("sudo pilot daemon install --system");
    expect(r.json.hint).toContain("pilot daemon install --user");
  });

  const bad: [string[], string, RegExp][] = [
    [["--hostname", "Not_Valid"], "invalid_argument", /hostname/],
    [["--registry", "nowhere"], "invalid_argument", /--registry "nowhere" is not HOST:PORT/],
    [["--log-level", "loud"], "invalid_argument", /--log-level/],
    [["--buffer-budget", "1KiB"], "usage", /--buffer-budget/],
    [["--name", "../evil"], "invalid_argument", /service name/],
    [["--manager", "upstart"], "invalid_argument", /--manager must be systemd or launchd/],
    [["--user", "--system"], "usage", /exclude each other/],
    [["--bogus"], "usage", /bogus/],
  ];
  for (const [args, code, message] of bad) {
    test(`daemon install ${args.join(" ")}: exit 2 (${code}), nothing written`, async () => {
      const units = join(dir, "bad-units");
      const r = await runPilot(["daemon", "install", "--unit-dir", units, ...args, "--json"], { env });
      expect(r.code).toBe(2);
      expect(r.json.code).toBe(code);
      expect(r.json.message).toMatch(message);
      expect(existsSync(units)).toBe(false);
    });
  }

  test("--help teaches", async () => {
    const r = await runPilot(["daemon", "install", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("pilot daemon install: ");
    for (const s of ["--user", "--system", "--dry-run", "--unit-dir", "--hostname", "--registry", "Examples:"]) expect(r.stdout).toContain(s);
  });
});

describe("the unit's command line", () => {
  test("run as written, it starts a daemon that answers and logs to PILOT_HOME/pilot.log, and stops on SIGTERM", async () => {
    const c = await startCluster();
    let pid = 0;
    try {
      const h = join(c.dir, "svc");
      const r = await runPilot(["daemon", "install", "--user", "--unit-dir", join(c.dir, "units"), "--registry", c.registry, "--beacon", c.beacon, "--listen", "127.0.0.1:0", "--hostname", "svc-a", "--json"], { env: { PILOT_HOME: h } });
      expect(r.code).toBe(0);
      const { command } = r.json.data;
      // The environment the unit sets, and nothing of ours but PATH.
      const unitEnv = Object.fromEntries([...r.json.data.unit.matchAll(/^Environment=(\w+)=(.*)$/gm)].map((m: RegExpMatchArray) => [m[1], m[2]]));
      expect(unitEnv.PILOT_HOME).toBe(h);
      const proc = Bun.spawn(command, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...unitEnv }, cwd: "/", stdout: "pipe", stderr: "pipe" });
      pid = proc.pid;
      let status;
      const deadline = Date.now() + 20_000;
      for (;;) {
        status = await runPilot(["status", "--json"], { env: { PILOT_HOME: h } });
        if (status.code === 0) break;
        if (Date.now() > deadline) throw new Error(`the service's daemon did not answer: ${await new Response(proc.stderr).text()}`);
        await Bun.sleep(200);
      }
      expect(status.json.data.node).toMatchObject({ hostname: "svc-a", pid: proc.pid });
      const log = readFileSync(join(h, "pilot.log"), "utf8");
      expect(log).toContain("INFO  daemon: daemon ready");
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      pid = 0;
      expect(readFileSync(join(h, "pilot.log"), "utf8")).toContain("daemon stopped");
      // The journal (stderr) gets only what is not a log record.
      expect(await new Response(proc.stderr).text()).not.toContain("daemon ready");
    } finally {
      if (pid) process.kill(pid, "SIGKILL");
      await c.stop();
    }
  }, 60_000);
});

describe("where the service manager runs (a stand-in systemctl on PATH)", () => {
  test("install enables, starts and waits for the daemon; a reinstall restarts it; a hand-started daemon is left alone; uninstall stops and removes", async () => {
    const c = await startCluster();
    const h = join(c.dir, "managed");
    try {
      const bin = join(c.dir, "bin");
      const state = join(c.dir, "state");
      const calls = join(c.dir, "systemctl.log");
      mkdirSync(bin);
      mkdirSync(state);
      const pilot = shellLine(pilotCommand());
      const start = `${pilot} daemon start --registry ${c.registry} --beacon ${c.beacon} --listen 127.0.0.1:0 >/dev/null`;
      // Stands in for systemd: records its arguments, and starts and stops the daemon as the unit would.
      writeFileSync(
        join(bin, "systemctl"),
        `#!/bin/sh
echo "$*" >> ${calls}
case "$*" in
  *is-active*) [ -f ${state}/active ] && exit 0; exit 3 ;;
  *"enable --now"*) touch ${state}/active; ${start} ;;
  *restart*) ${pilot} daemon stop >/dev/null; ${start} ;;
  *"disable --now"*) [ -f ${state}/active ] && ${pilot} daemon stop >/dev/null; rm -f ${state}/active ;;
esac
exit 0
`,
        { mode: 0o755 },
      );
      const env = { PILOT_HOME: h, XDG_CONFIG_HOME: join(c.dir, "xdg"), PATH: `${bin}:${process.env.PATH}`, PILOT_SERVICE_MANAGER: "running" };
      const file = join(c.dir, "xdg", "systemd", "user", "pilot.service");
      const took = () => (existsSync(calls) ? readFileSync(calls, "utf8").trim().split("\n") : []);
      const reset = () => rmSync(calls, { force: true });

      let r = await runPilot(["daemon", "install", "--user", "--hostname", "managed-a", "--json"], { env, timeoutMs: 60_000 });
      expect(r.code).toBe(0);
      expect(r.json.data).toMatchObject({ file, manager_running: true, started: true, running: true, next_steps: [] });
      expect(r.json.data.address).toMatch(/^0:0000\.[0-9A-F]{4}\.[0-9A-F]{4}$/);
      expect(took()).toEqual(["--user is-active --quiet pilot.service", "--user daemon-reload", "--user enable --now pilot.service"]);
      expect(readFileSync(file, "utf8")).toContain("--hostname managed-a");

      reset();
      r = await runPilot(["daemon", "install", "--user", "--hostname", "managed-a", "--tags", "ops", "--json"], { env, timeoutMs: 60_000 });
      expect(r.code).toBe(0);
      expect(r.json.data).toMatchObject({ started: true, running: true });
      expect(took()).toEqual(["--user is-active --quiet pilot.service", "--user daemon-reload", "--user enable pilot.service", "--user restart pilot.service"]);

      reset();
      r = await runPilot(["daemon", "uninstall", "--user", "--json"], { env });
      expect(r.code).toBe(0);
      expect(r.json.data).toMatchObject({ file, stopped: true, commands: ["systemctl --user disable --now pilot.service", "systemctl --user daemon-reload"] });
      expect(existsSync(file)).toBe(false);
      expect((await runPilot(["status", "--json"], { env })).json.code).toBe("not_running");

      // A daemon started by hand for the same home: the service is enabled, not started on top of it.
      expect((await runPilot(["daemon", "start", "--registry", c.registry, "--beacon", c.beacon, "--listen", "127.0.0.1:0"], { env })).code).toBe(0);
      reset();
      r = await runPilot(["daemon", "install", "--user", "--json"], { env, timeoutMs: 60_000 });
      expect(r.code).toBe(0);
      expect(r.json.data).toMatchObject({ started: false, running: false });
      expect(r.json.data.note).toContain("a daemon started by hand runs for this PILOT_HOME");
      expect(r.json.data.note).toContain("pilot daemon stop && systemctl --user enable --now pilot.service");
      expect(took()).toEqual(["--user is-active --quiet pilot.service", "--user daemon-reload", "--user enable pilot.service"]);
    } finally {
      await runPilot(["daemon", "stop"], { env: { PILOT_HOME: h } });
      await c.stop();
    }
  }, 120_000);
});
