/**
 * `pilot dashboard`: the address of the daemon's local dashboard page, with
 * its token (docs/DASHBOARD.md). It asks the daemon (IPC `dashboard`) and
 * prints; it opens nothing.
 */
import type { CommandSpec } from "../command.ts";
import { withDaemon } from "../daemon-client.ts";

export const dashboardCommand: CommandSpec = {
  name: "dashboard",
  description: "Print the address of this node's live dashboard page (loopback only; the address carries its token)",
  examples: ["pilot dashboard", "pilot --json dashboard   # .data.url"],
  returns: {
    url: "the page's address with its token (?token=…): open it in a browser on this machine",
    address: "the page's address without the token",
    token_file: "where the token is kept (mode 0600); also accepted as Authorization: Bearer TOKEN",
  },
  errors: ["not_running", "not_found"],
  async run({ out }) {
    const data = (await withDaemon((d) => d.call("dashboard"))) as { url: string; address: string; token_file: string };
    out.result({ url: data.url, address: data.address, token_file: data.token_file }, (d: any) => `Dashboard: ${d.url}\n  (loopback only; the token is also in ${d.token_file})`);
  },
};
