/**
 * Where the daemon's IPC socket lives. Explicit options win over the
 * environment: `socketPath`, else `<home>/pilot.sock`, else PILOT_SOCKET,
 * else `$PILOT_HOME/pilot.sock` (PILOT_HOME defaults to ~/.pilot).
 */
import { join } from "node:path";
import { pilotPaths } from "../util/paths.ts";

export interface SocketPathOptions {
  /** Explicit socket path; wins over everything. */
  socketPath?: string;
  /** A PILOT_HOME to use instead of the environment's: the socket is `<home>/pilot.sock`. */
  home?: string;
  env?: NodeJS.ProcessEnv;
}

export function resolveSocketPath(options: SocketPathOptions = {}): string {
  if (options.socketPath) return options.socketPath;
  if (options.home) return join(options.home, "pilot.sock");
  return pilotPaths(options.env ?? process.env).socket;
}

/** sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = process.platform === "linux" ? 107 : 103;
