/**
 * Service definitions for the daemon, as pure functions of what to run: a
 * systemd unit (Linux) or a launchd property list (macOS), for one user or
 * for the whole system, and the service-manager commands that load and
 * unload them. No I/O here: `pilot daemon install|uninstall`
 * (src/cli/commands/service.ts) writes the files and runs the commands.
 *
 * Every value that ends up in a file is checked first: a control character
 * (a newline in a path would start a new directive) is refused, and what is
 * left is quoted for the file's syntax.
 */

export type ServiceManager = "systemd" | "launchd";
export type ServiceScope = "user" | "system";

export interface ServiceSpec {
  /** The unit's name (pilot.service) or the launchd label's last part. */
  readonly name: string;
  readonly scope: ServiceScope;
  /** argv of the daemon: the executable (absolute) and its arguments. */
  readonly command: readonly string[];
  /** PILOT_HOME of the daemon; its state and log live there (and must be writable). */
  readonly home: string;
  /** Environment of the daemon (PILOT_HOME and whatever else it needs). */
  readonly env: Readonly<Record<string, string>>;
  /** Paths the daemon writes besides PILOT_HOME (a PILOT_SOCKET elsewhere). */
  readonly writablePaths?: readonly string[];
  /** System scope: the user the daemon runs as (null: root). */
  readonly user?: string | null;
  /** The daemon's log file, where launchd sends stdout and stderr. */
  readonly logFile: string;
}

export class ServiceSpecError extends Error {}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A service name: letters, digits, '.', '_', '-'; at most 64 characters. */
export function checkServiceName(name: string): string {
  if (!NAME.test(name) || name.endsWith(".service") || name.endsWith(".plist")) {
    throw new ServiceSpecError(`service name "${name}" must be 1-64 letters, digits, '.', '_' or '-' (without .service or .plist)`);
  }
  return name;
}

function checkValue(value: string, what: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) throw new ServiceSpecError(`${what} contains a control character: ${JSON.stringify(value)}`);
  return value;
}

function checkSpec(spec: ServiceSpec): void {
  checkServiceName(spec.name);
  if (spec.command.length === 0 || !spec.command[0]!.startsWith("/")) throw new ServiceSpecError("the service's executable must be an absolute path");
  for (const a of spec.command) checkValue(a, "a command argument");
  for (const [k, v] of Object.entries(spec.env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new ServiceSpecError(`bad environment variable name ${JSON.stringify(k)}`);
    checkValue(v, k);
  }
  if (!spec.home.startsWith("/")) throw new ServiceSpecError(`PILOT_HOME must be an absolute path, got ${JSON.stringify(spec.home)}`);
  for (const p of [spec.home, spec.logFile, ...(spec.writablePaths ?? [])]) checkValue(p, "a path");
  if (spec.user != null && !/^[a-z_][a-z0-9_-]*\$?$/i.test(spec.user)) throw new ServiceSpecError(`bad user name ${JSON.stringify(spec.user)}`);
}

// ---- systemd -----------------------------------------------------------------

/**
 * One word of a systemd setting (Environment=, ReadWritePaths=): % escaped
 * (specifiers), quoted with C-style escapes when it is not a plain word.
 */
export function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, "%%");
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** One word of ExecStart=: as a setting's, and $ doubled (variables are expanded there, and only there). */
export function systemdExecWord(word: string): string {
  return systemdQuote(word.replace(/\$/g, "$$$$"));
}

/** Characters systemd refuses in an executable's name (it does not unescape them there). */
const EXEC_NAME_REFUSED = /[$"'\\]/;

/** Is `path` under /tmp or /var/tmp (where PrivateTmp= would hide it from everyone else)? */
function inTmp(path: string): boolean {
  return /^\/(var\/)?tmp(\/|$)/.test(path);
}

/**
 * The unit. Both scopes restart on failure, without a limit (a daemon that
 * cannot reach its registry at boot exits 1 and is tried again 5 s later),
 * but not after a usage error (exit 2: a bad option or config value). The system unit is
 * hardened where the daemon does not need the freedom: no new privileges, the
 * whole file system read-only except PILOT_HOME, a private /tmp (unless
 * PILOT_HOME or the executable lives in /tmp), no kernel tunables, modules or
 * cgroups, only the socket families it uses (unix for IPC, IPv4/IPv6 for the
 * tunnel and the registry, netlink to list interfaces), and no capabilities
 * but binding low ports. Not MemoryDenyWriteExecute: the runtime's JIT needs it.
 */
export function systemdUnit(spec: ServiceSpec): string {
  checkSpec(spec);
  const system = spec.scope === "system";
  const lines = [
    "# Written by `pilot daemon install`; remove with `pilot daemon uninstall`.",
    `# The daemon logs to ${spec.logFile} (pilot logs -f); start-up errors and crashes also reach the journal.`,
    "[Unit]",
    "Description=Pilot daemon (encrypted overlay network for AI agents)",
  ];
  if (system) lines.push("Wants=network-online.target", "After=network-online.target");
  // Keep trying: a registry that is not reachable at boot may be there in a minute.
  lines.push("StartLimitIntervalSec=0", "", "[Service]", "Type=simple");
  if (system && spec.user) lines.push(`User=${spec.user}`);
  for (const [k, v] of Object.entries(spec.env)) lines.push(`Environment=${systemdQuote(`${k}=${v}`)}`);
  if (EXEC_NAME_REFUSED.test(spec.command[0]!)) throw new ServiceSpecError(`systemd does not accept $, quotes or backslashes in an executable's path: ${spec.command[0]}`);
  lines.push(`ExecStart=${spec.command.map(systemdExecWord).join(" ")}`);
  // Exit 2 is a usage error (a bad option or config value): restarting would not fix it.
  lines.push("Restart=on-failure", "RestartSec=5s", "RestartPreventExitStatus=2", "TimeoutStopSec=15s", "NoNewPrivileges=yes");
  if (system) {
    const writable = [spec.home, ...(spec.writablePaths ?? [])];
    lines.push("ProtectSystem=strict", `ReadWritePaths=${writable.map(systemdQuote).join(" ")}`);
    if (![spec.home, spec.command[0]!, spec.command[1] ?? "", ...writable].some(inTmp)) lines.push("PrivateTmp=yes");
    lines.push(
      "ProtectKernelTunables=yes",
      "ProtectKernelModules=yes",
      "ProtectControlGroups=yes",
      "RestrictSUIDSGID=yes",
      "RestrictRealtime=yes",
      "RestrictNamespaces=yes",
      "LockPersonality=yes",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
      "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    );
  }
  lines.push("", "[Install]", `WantedBy=${system ? "multi-user.target" : "default.target"}`, "");
  return lines.join("\n");
}

// ---- launchd -----------------------------------------------------------------

function xml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

/** The launchd label of a service name: the name itself (pilot). */
export function launchdLabel(name: string): string {
  return checkServiceName(name);
}

/**
 * The property list: started at load (boot or login), restarted when it
 * exits with an error (not after a clean stop), stdout and stderr appended to
 * the daemon's log file so start-up errors land there too.
 */
export function launchdPlist(spec: ServiceSpec): string {
  checkSpec(spec);
  const s = (v: string) => `<string>${xml(v)}</string>`;
  const lines = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`,
    `<!-- Written by pilot daemon install; remove with pilot daemon uninstall. -->`,
    `<plist version="1.0">`,
    `<dict>`,
    `  <key>Label</key>`,
    `  ${s(launchdLabel(spec.name))}`,
    `  <key>ProgramArguments</key>`,
    `  <array>`,
    ...spec.command.map((a) => `    ${s(a)}`),
    `  </array>`,
    `  <key>EnvironmentVariables</key>`,
    `  <dict>`,
    ...Object.entries(spec.env).flatMap(([k, v]) => [`    <key>${xml(k)}</key>`, `    ${s(v)}`]),
    `  </dict>`,
  ];
  if (spec.scope === "system" && spec.user) lines.push(`  <key>UserName</key>`, `  ${s(spec.user)}`);
  lines.push(
    `  <key>RunAtLoad</key>`,
    `  <true/>`,
    `  <key>KeepAlive</key>`,
    `  <dict>`,
    `    <key>SuccessfulExit</key>`,
    `    <false/>`,
    `  </dict>`,
    `  <key>ThrottleInterval</key>`,
    `  <integer>5</integer>`,
    `  <key>ProcessType</key>`,
    `  <string>Background</string>`,
    `  <key>StandardOutPath</key>`,
    `  ${s(spec.logFile)}`,
    `  <key>StandardErrorPath</key>`,
    `  ${s(spec.logFile)}`,
    `</dict>`,
    `</plist>`,
    "",
  );
  return lines.join("\n");
}

// ---- where the files go, and what tells the manager -------------------------

/** The directory the service manager reads for this scope. */
export function standardServiceDir(manager: ServiceManager, scope: ServiceScope, env: { home: string; xdgConfigHome?: string }): string {
  if (manager === "systemd") {
    if (scope === "system") return "/etc/systemd/system";
    const base = env.xdgConfigHome && env.xdgConfigHome.startsWith("/") ? env.xdgConfigHome : `${env.home}/.config`;
    return `${base}/systemd/user`;
  }
  return scope === "system" ? "/Library/LaunchDaemons" : `${env.home}/Library/LaunchAgents`;
}

export function serviceFileName(manager: ServiceManager, name: string): string {
  return manager === "systemd" ? `${checkServiceName(name)}.service` : `${launchdLabel(name)}.plist`;
}

/** Where the service manager was at install time: whether the unit was running, and whether the manager runs at all. */
export interface ManagerState {
  /** The service manager runs here (systemd is PID 1 / the user manager is up; launchd: always on macOS). */
  readonly running: boolean;
  /** The service is active now (a reinstall restarts it). */
  readonly serviceActive: boolean;
  /** A daemon for this PILOT_HOME runs outside the service (started by hand): starting the service would collide. */
  readonly otherDaemonPid: number | null;
}

/** A service-manager command; `mayFail` when failing only means there was nothing to undo. */
export interface ManagerCommand {
  readonly argv: readonly string[];
  readonly mayFail?: boolean;
}

function systemctl(scope: ServiceScope, ...args: string[]): ManagerCommand {
  return { argv: scope === "user" ? ["systemctl", "--user", ...args] : ["systemctl", ...args] };
}

function launchdDomain(scope: ServiceScope, uid: number): string {
  return scope === "system" ? "system" : `gui/${uid}`;
}

/**
 * The commands that load an installed service, and whether they start it:
 * a running service is restarted (a reinstall with new options); a daemon
 * of the same PILOT_HOME started by hand is left alone (the service is
 * enabled for the next boot, not started, since the two would collide).
 */
export function installCommands(manager: ServiceManager, scope: ServiceScope, name: string, file: string, state: ManagerState, uid: number): { commands: ManagerCommand[]; starts: boolean } {
  if (manager === "systemd") {
    const unit = serviceFileName("systemd", name);
    if (state.serviceActive) return { commands: [systemctl(scope, "daemon-reload"), systemctl(scope, "enable", unit), systemctl(scope, "restart", unit)], starts: true };
    if (state.otherDaemonPid !== null) return { commands: [systemctl(scope, "daemon-reload"), systemctl(scope, "enable", unit)], starts: false };
    return { commands: [systemctl(scope, "daemon-reload"), systemctl(scope, "enable", "--now", unit)], starts: true };
  }
  const domain = launchdDomain(scope, uid);
  const target = `${domain}/${launchdLabel(name)}`;
  if (state.otherDaemonPid !== null && !state.serviceActive) return { commands: [{ argv: ["launchctl", "enable", target] }], starts: false };
  // bootout first (nothing to undo the first time): bootstrap does not reload a loaded job.
  return { commands: [{ argv: ["launchctl", "enable", target] }, { argv: ["launchctl", "bootout", target], mayFail: true }, { argv: ["launchctl", "bootstrap", domain, file] }], starts: true };
}

/** The commands that stop and unload a service before its file is removed, and those that follow the removal. */
export function uninstallCommands(manager: ServiceManager, scope: ServiceScope, name: string, uid: number): { before: ManagerCommand[]; after: ManagerCommand[] } {
  if (manager === "systemd") return { before: [{ ...systemctl(scope, "disable", "--now", serviceFileName("systemd", name)), mayFail: true }], after: [systemctl(scope, "daemon-reload")] };
  return { before: [{ argv: ["launchctl", "bootout", `${launchdDomain(scope, uid)}/${launchdLabel(name)}`], mayFail: true }], after: [] };
}

/** A command as a person would type it. */
export function shellLine(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}
