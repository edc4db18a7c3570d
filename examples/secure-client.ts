/**
 * The tutorial's secure client: `dialSecure` (Go's DialSecure) to port 443
 * of another agent, then an HTTP request written by hand on the channel.
 *
 *   bun examples/secure-client.ts TARGET [PATH]
 *
 * TARGET is the hostname, address or node id of an agent running
 * `secure-server.ts` (it must trust this agent); PATH defaults to
 * /api/secrets. Prints the status and the body, as the tutorial does, and
 * exits 0 on a 2xx answer, 1 otherwise. The channel has keys of its own
 * (an X25519 exchange signed by both daemons' identities), inside the
 * tunnel's encryption; `pilot.fetch("https://TARGET/api/secrets")` is the
 * same channel with fetch on top.
 */
import { NodeError } from "pilot/driver";
import { connectToDaemon, exitWithError, parseResponse, urlHost, type RawReply } from "./common.ts";

const PORT = 443;

if (import.meta.main) {
  const target = process.argv[2];
  const path = process.argv[3] ?? "/api/secrets";
  if (!target || target.startsWith("-") || !/^\/[^\s]*$/.test(path)) {
    console.error("usage: bun examples/secure-client.ts TARGET [PATH]   (hostname, address or node id of the agent running secure-server.ts; PATH starts with /)");
    process.exit(2);
  }
  const pilot = await connectToDaemon();
  let resp: RawReply;
  try {
    // Connect to the secure port: resolves once both sides proved who they are.
    const conn = await pilot.dialSecure(target, PORT);
    // Standard HTTP over the double-encrypted connection.
    conn.write(`GET ${path} HTTP/1.1\r\nHost: ${urlHost(target)}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
    const chunks: Buffer[] = [];
    for await (const chunk of conn) chunks.push(chunk as Buffer);
    resp = parseResponse(Buffer.concat(chunks).toString("utf8"));
  } catch (error) {
    if (error instanceof NodeError) exitWithError(error);
    console.error(`error: ${(error as Error).message}`);
    process.exit(1);
  }
  console.log(`Status: ${resp.status}\nBody: ${resp.body.trim()}`);
  await pilot.close();
  process.exit(resp.status >= 200 && resp.status < 300 ? 0 : 1);
}
