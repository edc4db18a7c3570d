/**
 * Where Pilot keeps its state. Everything lives under PILOT_HOME (default
 * `~/.pilot`); PILOT_SOCKET overrides the IPC socket path. Under `sudo`, the
 * invoking user's home is used (so `sudo pilot gateway start` finds the
 * daemon the user started), unless PILOT_HOME says otherwise.
 */
import { execFileSync } from "node:child_process";
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

function invokingUserHome(env: NodeJS.ProcessEnv): string | undefined {
  const user = env.SUDO_USER;
  if (!user || user === "root" || !/^[a-z_][a-z0-9_-]*\$?$/i.test(user)) return undefined;
  try {
    const line = execFileSync("getent", ["passwd", user], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const home = line.trim().split(":")[5];
    return home && home.startsWith("/") ? home : undefined;
  } catch {
    return undefined;
  }
}

export function pilotHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PILOT_HOME) return env.PILOT_HOME;
  return join(invokingUserHome(env) ?? homedir(), ".pilot");
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
