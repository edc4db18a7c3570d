import type { CommandSpec } from "../command.ts";
import { PILOT_VERSION } from "../version.ts";

export const versionCommand: CommandSpec = {
  name: "version",
  description: "Print the version of pilot and of its runtime",
  returns: { version: "pilot's version", runtime: "the Bun runtime version", platform: "os-arch" },
  run({ out }) {
    const data = { version: PILOT_VERSION, runtime: `bun ${Bun.version}`, platform: `${process.platform}-${process.arch}` };
    out.result(data, (d) => `pilot ${d.version} (${d.runtime}, ${d.platform})`);
  },
};
