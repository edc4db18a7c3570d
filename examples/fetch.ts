/**
 * A tiny curl over Pilot: one HTTP request to an agent, the body on stdout.
 *
 *   bun examples/fetch.ts http://orders/api/orders/o1
 *   bun examples/fetch.ts http://agent-a/api/echo '{"hello":"pilot"}'    # a POST with a JSON body
 *
 * The URL's host is a hostname, a node id, or an address written with
 * dashes (0-0000-0000-0004); its port is the Pilot port (default 80). The status line
 * goes to stderr. Exit 0 for any HTTP response, 1 if none came back.
 */
import { connectToDaemon } from "./common.ts";

if (import.meta.main) {
  const [url, body] = process.argv.slice(2);
  if (!url || !url.startsWith("http://")) {
    console.error("usage: bun examples/fetch.ts http://HOST[:PORT]/PATH [JSON_BODY]");
    process.exit(2);
  }
  const pilot = await connectToDaemon();
  const started = performance.now();
  try {
    const res = await pilot.fetch(url, body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body });
    const text = await res.text();
    console.error(`HTTP ${res.status} ${res.statusText} (${(performance.now() - started).toFixed(1)} ms)`);
    process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
    await pilot.close();
    process.exit(0);
  } catch (error) {
    const e = error as Error & { hint?: string };
    console.error(`error: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ""}`);
    await pilot.close();
    process.exit(1);
  }
}
