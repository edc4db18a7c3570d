import pkg from "../../package.json" with { type: "json" };

export const PILOT_VERSION: string = pkg.version;
