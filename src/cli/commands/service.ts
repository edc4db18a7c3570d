/**
 * `pilot daemon install|uninstall`: the daemon as a system service. Install
 * writes a systemd unit (Linux) or a launchd property list (macOS) that runs
 * `pilot daemon start --foreground --log-to file` with the options given here
 * and this PILOT_HOME, then enables and starts it where the service manager
 * runs. Where none runs (a container, CI), it writes the file and says what
 * to run. The files themselves come from pure functions (src/cli/service-units.ts).
 *
 * What runs: the executable that runs this command. A compiled `pilot` names
 * itself; from a source checkout, the unit runs this Bun with this checkout's
 * src/cli/main.ts (so moving the checkout or removing that Bun breaks the
 * service: install the compiled `pilot` for anything lasting).
 */
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { CommandSpec, OptionSpec } from "../command.ts";
import { CliError, usageError } from "../errors.ts";
import { badValue, choiceOption, textOption } from "../args.ts";
import { withDaemon } from "../daemon-client.ts";
import { pilotPaths } from "../../util/paths.ts";
import { writeFileAtomic } from "../../util/atomic-file.ts";
import { daemonStart, selfCommand, settingsFrom } from "./daemon.ts";
import {
  checkServiceName,
  installCommands,
  launchdPlist,
  launchdLabel,
  ServiceSpecError,
  serviceFileName,
  shellLine,
  standardServiceDir,
  systemdUnit,
  uninstallCommands,
  type ManagerCommand,
  type ManagerState,
  type ServiceManager,
  type ServiceScope,
  type ServiceSpec,
} from "../service-units.ts";

/** How long install waits for a started service's daemon to answer. */
const ANSWER_WAIT_MS = 10_000;

const SCOPE_OPTIONS: OptionSpec[] = [
  { flags: "--user", description: "a service of this user (systemd: ~/.config/systemd/user; launchd: ~/Library/LaunchAgents); the default unless root" },
  { flags: "--system", description: "a system service (systemd: /etc/systemd/system; launchd: /Library/LaunchDaemons); needs root; the default as root" },
  { flags: "--name <name>", description: "the service's name (default pilot): one per PILOT_HOME, e.g. pilot-analyst" },
  { flags: "--manager <manager>", description: "systemd or launchd (default: launchd on macOS, systemd elsewhere)" },
  { flags: "--unit-dir <dir>", description: "write the file into this directory instead of the manager's own (for packaging and tests: the manager is then left alone)" },
];

/** The daemon start options a service passes through (all of them but --foreground). */
const START_OPTIONS = (daemonStart.options ?? []).filter((opt) => !opt.flags.startsWith("--foreground"));

interface Target {
  manager: ServiceManager;
  scope: ServiceScope;
  name: string;
  dir: string;
  file: string;
  /** The directory is the one the manager reads (so the manager is told). */
  standard: boolean;
}

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

function uid(): number {
  return typeof process.getuid === "function" ? process.getuid() : 0;
}

function targetFrom(o: Record<string, any>): Target {
  if (o.user && o.system) throw usageError("--user and --system exclude each other", "pick one: pilot daemon install --user");
  const manager = choiceOption(o.manager, "--manager", ["systemd", "launchd"] as const) ?? (process.platform === "darwin" ? "launchd" : "systemd");
  const scope: ServiceScope = o.system ? "system" : o.user ? "user" : isRoot() ? "system" : "user";
  let name = "pilot";
  if (o.name !== undefined) {
    const text = textOption(o, "name") ?? "";
    try {
      name = checkServiceName(text);
    } catch (e) {
      throw badValue((e as Error).message, "for example: --name pilot-analyst");
    }
  }
  const standardDir = standardServiceDir(manager, scope, { home: homedir(), xdgConfigHome: process.env.XDG_CONFIG_HOME });
  let dir = standardDir;
  if (o.unitDir !== undefined) {
    const text = textOption(o, "unit-dir") ?? textOption(o, "unitDir") ?? "";
    if (text === "") throw badValue("--unit-dir needs a directory", "for example: --unit-dir /tmp/units");
    dir = resolve(text);
  }
  return { manager, scope, name, dir, file: join(dir, serviceFileName(manager, name)), standard: resolve(dir) === resolve(standardDir) };
}

/** The daemon start options given on this command line, as `daemon start` takes them. */
function passThrough(o: Record<string, any>): string[] {
  const args: string[] = [];
  for (const opt of START_OPTIONS) {
    const m = /^--(no-)?([a-z0-9-]+)( <[^>]+>)?$/.exec(opt.flags)!;
    const kebab = m[2]!;
    const camel = kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (m[1]) {
      if (o[camel] === false) args.push(`--no-${kebab}`);
    } else if (m[3]) {
      if (o[camel] === undefined) continue;
      const value = textOption(o, kebab) ?? String(o[camel]);
      args.push(`--${kebab}`, value);
    } else if (o[camel] === true) args.push(`--${kebab}`);
  }
  return args;
}

/**
 * Does the service manager run here (so it can be told about the service)?
 * PILOT_SERVICE_MANAGER=running|absent overrides the guess (tests drive the
 * manager path with a stand-in systemctl on PATH; unusual init systems).
 */
function managerRuns(manager: ServiceManager, scope: ServiceScope): boolean {
  const forced = process.env.PILOT_SERVICE_MANAGER;
  if (forced === "running" || forced === "absent") return forced === "running";
  if (manager === "launchd") return process.platform === "darwin";
  if (!existsSync("/run/systemd/system")) return false; // systemd is not PID 1
  if (scope === "system") return true;
  const runtime = process.env.XDG_RUNTIME_DIR;
  return !!runtime && existsSync(join(runtime, "systemd"));
}

function run(argv: readonly string[]): { ok: boolean; output: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
  return { ok: r.status === 0, output: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() || (r.error?.message ?? "") };
}

function serviceActive(t: Target): boolean {
  if (t.manager === "systemd") return run([...(t.scope === "user" ? ["systemctl", "--user"] : ["systemctl"]), "is-active", "--quiet", serviceFileName("systemd", t.name)]).ok;
  return run(["launchctl", "print", `${t.scope === "system" ? "system" : `gui/${uid()}`}/${launchdLabel(t.name)}`]).ok;
}

async function answeringDaemon(timeoutMs: number): Promise<Record<string, any> | null> {
  try {
    return await withDaemon((d) => d.info(), { timeoutMs });
  } catch {
    return null;
  }
}

/** Runs the manager's commands in order; the first real failure is an error that says the file is in place. */
function runCommands(commands: readonly ManagerCommand[], file: string, rest: string): string[] {
  const ran: string[] = [];
  for (const c of commands) {
    const r = run(c.argv);
    ran.push(shellLine(c.argv));
    if (!r.ok && !c.mayFail) {
      throw new CliError("internal", `${shellLine(c.argv)} failed${r.output ? `: ${r.output}` : ""}`, `${rest} (${file})`);
    }
  }
  return ran;
}

/** Where a source checkout runs from: the script beside this Bun (absolute, so the manager finds it). */
function serviceCommand(args: string[]): { command: string[]; fromSource: boolean } {
  const command = selfCommand(args);
  const fromSource = command.length > args.length + 1;
  if (fromSource) command[1] = resolve(command[1]!);
  return { command, fromSource };
}

/** What a person runs where no manager ran (or to do it by hand). */
function manualSteps(t: Target): string[] {
  const file = join(standardServiceDir(t.manager, t.scope, { home: homedir(), xdgConfigHome: process.env.XDG_CONFIG_HOME }), serviceFileName(t.manager, t.name));
  const copy = t.standard ? [] : [`cp ${shellLine([t.file])} ${shellLine([file])}`];
  if (t.manager === "systemd") {
    const ctl = t.scope === "user" ? "systemctl --user" : "systemctl";
    return [...copy, `${ctl} daemon-reload`, `${ctl} enable --now ${serviceFileName("systemd", t.name)}`];
  }
  const domain = t.scope === "system" ? "system" : `gui/${uid()}`;
  return [...copy, `launchctl bootstrap ${domain} ${shellLine([file])}`];
}

export const daemonInstall: CommandSpec = {
  group: "daemon",
  name: "install",
  description: "Install the daemon as a service (systemd unit or launchd plist) that starts at boot or login and restarts on failure",
  options: [
    ...SCOPE_OPTIONS,
    { flags: "--dry-run", description: "print the unit and where it would go; write nothing, start nothing" },
    ...START_OPTIONS,
  ],
  examples: [
    "pilot daemon install --hostname agent-a --registry 203.0.113.5:9000     # a user service",
    "sudo pilot daemon install --system --public --tags nlp                  # a system service, hardened",
    "pilot daemon install --dry-run --user                                   # show the unit, write nothing",
  ],
  returns: {
    file: "the unit or plist written (or that would be, with --dry-run)",
    manager: "'systemd' or 'launchd'",
    scope: "'user' or 'system'",
    name: "the service's name",
    unit: "the file's contents",
    command: "the daemon's command line in the service (array)",
    home: "the service daemon's PILOT_HOME",
    written: "false with --dry-run",
    manager_running: "true if the service manager runs here and was told (false: a container, CI, or --unit-dir)",
    started: "true if the manager started (or restarted) the service",
    running: "true if the daemon answered within 10 s",
    address: "the daemon's address, when it answered",
    next_steps: "commands to run by hand when the manager was not told (array)",
    note: "present when something is left to do: the manager was not told, the service was not started, or its daemon has not answered yet",
  },
  errors: ["invalid_argument", "usage", "unauthorized", "internal"],
  async run({ out }, _args, o) {
    const t = targetFrom(o);
    // The same checks as daemon start, so a bad value fails here, not in a restart loop.
    await settingsFrom({ ...o, foreground: true });
    const startArgs = passThrough(o);
    if (!startArgs.includes("--log-to")) startArgs.push("--log-to", "file");
    const { command, fromSource } = serviceCommand(["daemon", "start", "--foreground", ...startArgs]);
    const paths = pilotPaths();
    const home = resolve(paths.home);
    const env: Record<string, string> = { PILOT_HOME: home };
    for (const k of ["PILOT_SOCKET", "PILOT_REGISTRY", "PILOT_BEACON"]) if (process.env[k]) env[k] = process.env[k]!;
    // Bun's transpiler cache would try to write under $HOME, read-only in the system unit.
    if (fromSource) env.BUN_RUNTIME_TRANSPILER_CACHE_PATH = "0";
    const sudoUser = process.env.SUDO_USER && process.env.SUDO_USER !== "root" && isRoot() ? process.env.SUDO_USER : null;
    const runAs = t.scope === "system" ? sudoUser : null;
    const socketDir = dirname(resolve(paths.socket));
    const spec: ServiceSpec = {
      name: t.name,
      scope: t.scope,
      command,
      home,
      env,
      user: runAs,
      logFile: resolve(paths.logFile),
      writablePaths: socketDir === home || socketDir.startsWith(home + "/") ? [] : [socketDir],
    };
    let unit: string;
    try {
      unit = t.manager === "systemd" ? systemdUnit(spec) : launchdPlist(spec);
    } catch (e) {
      if (e instanceof ServiceSpecError) throw badValue(e.message);
      throw e;
    }
    const base = { file: t.file, manager: t.manager, scope: t.scope, name: t.name, unit, command, home };
    if (o.dryRun) {
      out.result({ ...base, written: false, manager_running: false, started: false, running: false, next_steps: [] }, (d: any) => `# would write ${d.file}\n${d.unit}`);
      return;
    }
    if (t.standard && t.scope === "system" && !isRoot()) {
      throw new CliError("unauthorized", `installing a system service writes ${t.dir} and needs root`, `run it with sudo (sudo pilot daemon install --system ...), or install a service of your own: pilot daemon install --user`);
    }
    mkdirSync(home, { recursive: true, mode: 0o700 });
    if (runAs && process.env.SUDO_UID && process.env.SUDO_GID) {
      try {
        chownSync(home, Number(process.env.SUDO_UID), Number(process.env.SUDO_GID));
      } catch {
        // the daemon reports it if it cannot write there
      }
    }
    mkdirSync(t.dir, { recursive: true, mode: 0o755 });
    writeFileAtomic(t.file, unit, 0o644);

    const managerRunning = t.standard && managerRuns(t.manager, t.scope);
    let started = false;
    let running = false;
    let address: string | null = null;
    let note = "";
    const steps = manualSteps(t);
    if (managerRunning) {
      const active = serviceActive(t);
      const other = active ? null : await answeringDaemon(1000);
      const state: ManagerState = { running: true, serviceActive: active, otherDaemonPid: typeof other?.pid === "number" ? other.pid : null };
      const plan = installCommands(t.manager, t.scope, t.name, t.file, state, uid());
      runCommands(plan.commands, t.file, `the ${t.manager === "systemd" ? "unit" : "plist"} is written; run the step by hand`);
      started = plan.starts;
      if (!started) note = `a daemon started by hand runs for this PILOT_HOME (pid ${state.otherDaemonPid}): the service is enabled for the next boot but not started; to switch now: pilot daemon stop && ${steps[steps.length - 1]}`;
      if (started) {
        const deadline = Date.now() + ANSWER_WAIT_MS;
        while (Date.now() < deadline) {
          const info = await answeringDaemon(1000);
          if (info) {
            running = true;
            address = String(info.address);
            break;
          }
          await Bun.sleep(250);
        }
        if (!running) note = `the service started but its daemon has not answered yet; see why with: pilot logs -n 20 (and ${t.manager === "systemd" ? `journalctl ${t.scope === "user" ? "--user " : ""}-u ${t.name}` : "the log"})`;
      }
    } else {
      note = t.standard
        ? `no ${t.manager === "systemd" ? "systemd" : "launchd"} ${t.scope === "user" && t.manager === "systemd" ? "user manager " : ""}runs here (a container or CI?), so the service was written but not started; where one runs: ${steps.join(" && ")}`
        : `written outside the manager's directory (--unit-dir), so the manager was not told; to use it: ${steps.join(" && ")}`;
    }
    const linger = t.manager === "systemd" && t.scope === "user" ? `a user service runs while you are logged in; to keep it running at boot and after logout: loginctl enable-linger ${process.env.USER ?? "$USER"}` : "";
    out.result(
      { ...base, written: true, manager_running: managerRunning, started, running, address, next_steps: managerRunning ? [] : steps, ...(note ? { note } : {}) },
      (d: any) =>
        [
          `Wrote ${d.file}:`,
          ...d.unit.trimEnd().split("\n").map((l: string) => `  ${l}`),
          "",
          d.running ? `Service ${d.name} is running: ${d.address} (logs: pilot logs -f; status: pilot status)` : d.started ? `Service ${d.name} started.` : `Service ${d.name} not started.`,
          ...(note ? [note] : []),
          ...(linger ? [linger] : []),
        ].join("\n"),
    );
  },
};

export const daemonUninstall: CommandSpec = {
  group: "daemon",
  name: "uninstall",
  description: "Stop and disable the daemon's service and remove its unit or plist (the daemon's state in PILOT_HOME stays)",
  options: SCOPE_OPTIONS,
  examples: ["pilot daemon uninstall --user", "sudo pilot daemon uninstall --system"],
  returns: { file: "the unit or plist removed", manager: "'systemd' or 'launchd'", scope: "'user' or 'system'", name: "the service's name", stopped: "true if the manager was told to stop and disable it", commands: "the manager commands run (array)" },
  errors: ["not_found", "unauthorized", "invalid_argument", "usage", "internal"],
  async run({ out }, _args, o) {
    const t = targetFrom(o);
    if (!existsSync(t.file)) {
      const other = t.scope === "user" ? "--system" : "--user";
      throw new CliError("not_found", `no ${t.name} service at ${t.file}`, `installed in the other scope? pilot daemon uninstall ${other}`);
    }
    if (t.standard && t.scope === "system" && !isRoot()) {
      throw new CliError("unauthorized", `removing a system service changes ${t.dir} and needs root`, "run it with sudo: sudo pilot daemon uninstall --system");
    }
    const managerRunning = t.standard && managerRuns(t.manager, t.scope);
    const plan = uninstallCommands(t.manager, t.scope, t.name, uid());
    const ran = managerRunning ? runCommands(plan.before, t.file, "the service file is still in place; stop it by hand and run this again") : [];
    rmSync(t.file, { force: true });
    if (managerRunning) ran.push(...runCommands(plan.after, t.file, "the service file is removed"));
    out.result({ file: t.file, manager: t.manager, scope: t.scope, name: t.name, stopped: managerRunning, commands: ran }, (d: any) =>
      [`Removed ${d.file}`, d.stopped ? `Service ${d.name} stopped and disabled.` : "No service manager was told (none runs here, or --unit-dir); stop a running daemon with: pilot daemon stop"].join("\n"),
    );
  },
};
