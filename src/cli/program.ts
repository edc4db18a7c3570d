/** The whole command surface of `pilot`, in one list. */
import type { CommandSpec, GroupSpec } from "./command.ts";
import type { Program } from "./dispatch.ts";
import { contextCommand } from "./commands/context.ts";
import { rendezvousCommand } from "./commands/rendezvous.ts";
import { versionCommand } from "./commands/version.ts";
import { daemonStart, daemonStatus, daemonStop } from "./commands/daemon.ts";
import { PILOT_VERSION } from "./version.ts";

export const GROUPS: readonly GroupSpec[] = [{ name: "daemon", description: "start, stop and inspect the local daemon" }];

export function buildProgram(name: string): Program {
  const commands: CommandSpec[] = [daemonStart, daemonStop, daemonStatus, rendezvousCommand, versionCommand];
  commands.push(contextCommand(() => commands));
  return { name, version: PILOT_VERSION, commands, groups: GROUPS };
}
