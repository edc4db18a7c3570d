/**
 * Pilot as a library: the driver SDK that apps use to talk to their local
 * daemon (see `src/driver/index.ts`, also exported as `pilot/driver`).
 */
export * from "./driver/index.ts";
