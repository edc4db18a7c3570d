/**
 * `pilot mcp`: a Model Context Protocol server on stdio for LLM agents
 * (Claude Desktop, Cursor, any MCP client), bound to the local daemon. The
 * server itself is src/mcp/; it is loaded only when this command runs, so
 * other commands do not pay for the MCP SDK.
 */
import type { CommandSpec } from "../command.ts";
import { PILOT_VERSION } from "../version.ts";

const CLIENT_CONFIG = `{
  "mcpServers": {
    "pilot": { "command": "pilot", "args": ["mcp"] }
  }
}`;

export const mcpCommand: CommandSpec = {
  name: "mcp",
  description:
    "Serve this node to an LLM agent as MCP tools on stdio (for Claude Desktop, Cursor, any MCP client): show self and peers, find agents by tag (with A2A cards), request/list/approve trust, send messages and files, read the inbox, submit tasks and read their status, HTTP to a peer's port. The client starts it; stdout is the protocol. approve_trust works only after: pilot config --set mcp_allow_trust_approval=true",
  examples: [
    "pilot mcp    # normally the MCP client starts it; it serves until stdin closes",
    "# In the MCP client's configuration (Claude Desktop: claude_desktop_config.json; Cursor: .cursor/mcp.json):",
    ...CLIENT_CONFIG.split("\n"),
    "# another node's daemon: add \"env\": { \"PILOT_HOME\": \"/path/to/home\" }",
    "pilot config --set mcp_allow_trust_approval=true    # let the agent approve trust requests (default: off)",
  ],
  returns: {
    stdout: "MCP JSON-RPC messages only (no envelope); tool results carry structuredContent, tool errors the CLI's {status, code, message, hint}",
  },
  errors: [],
  async run() {
    const { runStdioServer } = await import("../../mcp/server.ts");
    await runStdioServer(PILOT_VERSION);
  },
};
