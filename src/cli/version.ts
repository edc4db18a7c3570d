/** The CLI's view of the release version; defined in src/shared/version.ts, below the daemon and the CLI. */
export { PILOT_VERSION } from "../shared/version.ts";
