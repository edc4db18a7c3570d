/** The whole command surface of `pilot`, in one list (the order of `pilot --help` and `pilot context`). */
import type { CommandSpec, GroupSpec } from "./command.ts";
import type { Program } from "./dispatch.ts";
import { contextCommand } from "./commands/context.ts";
import { rendezvousCommand } from "./commands/rendezvous.ts";
import { versionCommand } from "./commands/version.ts";
import { daemonStart, daemonStatus, daemonStop } from "./commands/daemon.ts";
import { daemonInstall, daemonUninstall } from "./commands/service.ts";
import { statusCommand } from "./commands/status.ts";
import { dashboardCommand } from "./commands/dashboard.ts";
import { logsCommand } from "./commands/logs.ts";
import { clearHostnameCommand, clearTagsCommand, infoCommand, setHostnameCommand, setPrivateCommand, setPublicCommand, setTagsCommand } from "./commands/node.ts";
import { connectionsCommand, disconnectCommand, findCommand, peersCommand } from "./commands/peers.ts";
import { benchCommand, pingCommand, tracerouteCommand } from "./commands/diagnose.ts";
import { connectCommand, recvCommand } from "./commands/streams.ts";
import { listenCommand, sendCommand } from "./commands/datagrams.ts";
import { publishCommand, subscribeCommand, topicsCommand } from "./commands/pubsub.ts";
import { approveCommand, handshakeCommand, pendingCommand, rejectCommand, trustCommand, untrustCommand } from "./commands/trust.ts";
import { configCommand } from "./commands/config.ts";
import { reputationCommand } from "./commands/reputation.ts";
import { exposeCommand } from "./commands/expose.ts";
import { eventsCommand } from "./commands/events.ts";
import { inboxCommand, outboxCommand, sendMessageCommand } from "./commands/messages.ts";
import { receivedCommand, sendFileCommand } from "./commands/files.ts";
import { a2aDiscoverCommand, a2aGroup } from "./commands/a2a.ts";
import { gatewayCommands, gatewayGroup } from "./commands/gateway.ts";
import { installCommand, uninstallCommand } from "./commands/install.ts";
import { setTasksCommand, taskCommands, taskGroup } from "./commands/tasks.ts";
import { mcpCommand } from "./commands/mcp.ts";
import { PILOT_VERSION } from "./version.ts";

export const GROUPS: readonly GroupSpec[] = [{ name: "daemon", description: "start, stop and inspect the local daemon" }, gatewayGroup, a2aGroup, taskGroup];

export function buildProgram(name: string): Program {
  const commands: CommandSpec[] = [
    daemonStart,
    daemonStop,
    daemonStatus,
    daemonInstall,
    daemonUninstall,
    statusCommand,
    dashboardCommand,
    logsCommand,
    // this node
    infoCommand,
    setHostnameCommand,
    clearHostnameCommand,
    setPublicCommand,
    setPrivateCommand,
    setTagsCommand,
    clearTagsCommand,
    // other nodes
    findCommand,
    peersCommand,
    reputationCommand,
    connectionsCommand,
    disconnectCommand,
    // trust
    handshakeCommand,
    pendingCommand,
    approveCommand,
    rejectCommand,
    trustCommand,
    untrustCommand,
    // talking
    connectCommand,
    recvCommand,
    sendCommand,
    listenCommand,
    exposeCommand,
    eventsCommand,
    // messages and files
    sendMessageCommand,
    inboxCommand,
    outboxCommand,
    sendFileCommand,
    receivedCommand,
    // events through a broker (port 1002)
    publishCommand,
    subscribeCommand,
    topicsCommand,
    // diagnostics
    pingCommand,
    tracerouteCommand,
    benchCommand,
    // the gateway: remote agents on local IPs
    ...gatewayCommands,
    // A2A agents
    a2aDiscoverCommand,
    // tasks between agents
    ...taskCommands,
    setTasksCommand,
    // LLM agents (MCP on stdio)
    mcpCommand,
    // setup
    configCommand,
    rendezvousCommand,
    installCommand,
    uninstallCommand,
    versionCommand,
  ];
  commands.push(contextCommand(() => commands));
  return { name, version: PILOT_VERSION, commands, groups: GROUPS };
}
