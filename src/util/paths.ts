/**
 * Where Pilot keeps its state. Everything lives under PILOT_HOME (default
 * `~/.pilot`); PILOT_SOCKET overrides the IPC socket path. Under `sudo` (run
 * as root, SUDO_USER set, neither PILOT_HOME nor PILOT_SOCKET set) the
 * invoking user's home from the password database is used, so
 * `sudo pilot gateway start` finds the daemon that user started.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface PilotPaths {
  readonly home: string;
  readonly identity: string;
  readonly config: string;
  readonly trust: string;
  readonly socket: string;
  readonly pidFile: string;
  readonly logFile: string;
  readonly knownRegistries: string;
  /** Small daemon state that outlives a restart (the tunnel port). */
  readonly state: string;
  readonly rendezvousDir: string;
  readonly gatewayDir: string;
}

/** The user who ran `sudo`, from the password database. */
export interface SudoInvoker {
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
  /** Their home directory (from the password database, not $HOME, which sudo may reset to root's). */
  readonly home: string;
}

/** One line of passwd(5) for `user`: getent (NSS: LDAP, systemd-homed...), else /etc/passwd. */
function passwdEntry(user: string): string[] | undefined {
  try {
    const line = execFileSync("getent", ["passwd", user], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).split("\n")[0] ?? "";
    const fields = line.trim().split(":");
    if (fields[0] === user && fields.length >= 7) return fields;
  } catch {
    // no getent, or no such user
  }
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const fields = line.split(":");
      if (fields[0] === user && fields.length >= 7) return fields;
    }
  } catch {
    // no /etc/passwd
  }
  return undefined;
}

/**
 * The user behind `sudo`: only when we run as root, SUDO_USER names another
 * user, and neither PILOT_HOME nor PILOT_SOCKET says where to look. Then
 * `sudo pilot ...` works on that user's ~/.pilot, without passing PILOT_HOME
 * through sudo.
 */
export function sudoInvoker(env: NodeJS.ProcessEnv = process.env): SudoInvoker | undefined {
  if (env.PILOT_HOME || env.PILOT_SOCKET) return undefined;
  if (typeof process.geteuid !== "function" || process.geteuid() !== 0) return undefined;
  const user = env.SUDO_USER;
  if (!user || user === "root" || !/^[a-z_][a-z0-9_.-]*\$?$/i.test(user)) return undefined;
  const fields = passwdEntry(user);
  if (!fields) return undefined;
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  const home = fields[5] ?? "";
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0 || !home.startsWith("/")) return undefined;
  return { user, uid, gid, home };
}

export function pilotHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PILOT_HOME) return env.PILOT_HOME;
  return join(sudoInvoker(env)?.home ?? homedir(), ".pilot");
}

/** Where PILOT_HOME came from, for commands that say which one they use. */
export function pilotHomeSource(env: NodeJS.ProcessEnv = process.env): { home: string; from: "PILOT_HOME" | "sudo" | "home"; user?: string } {
  if (env.PILOT_HOME) return { home: env.PILOT_HOME, from: "PILOT_HOME" };
  const invoker = sudoInvoker(env);
  if (invoker) return { home: join(invoker.home, ".pilot"), from: "sudo", user: invoker.user };
  return { home: join(homedir(), ".pilot"), from: "home" };
}

export function pilotPaths(env: NodeJS.ProcessEnv = process.env): PilotPaths {
  const home = pilotHome(env);
  return {
    home,
    identity: join(home, "identity.json"),
    config: join(home, "config.json"),
    trust: join(home, "trust.json"),
    socket: env.PILOT_SOCKET || join(home, "pilot.sock"),
    pidFile: join(home, "pilot.pid"),
    logFile: join(home, "pilot.log"),
    knownRegistries: join(home, "known_registries.json"),
    state: join(home, "state.json"),
    rendezvousDir: join(home, "rendezvous"),
    gatewayDir: join(home, "gateway"),
  };
}
