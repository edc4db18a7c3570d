/**
 * Pilot's release version (package.json's), for everything that reports it:
 * the CLI, the daemon's status and hello. It lives here, below both, because
 * the daemon never imports the CLI.
 */
import pkg from "../../package.json" with { type: "json" };

export const PILOT_VERSION: string = pkg.version;
