/**
 * Makes docs/dashboard.png: real daemons on 127.0.0.1 (a node with two trusted
 * peers, a pending trust request, an exposed port, a gateway mapping on a
 * 127.x subnet, a message in its inbox),
 * about 40 s of traffic for the plots, then headless Chromium's screenshot of
 * `pilot dashboard`'s page. Needs Debian's chromium.
 *
 *   bun scripts/dashboard-screenshot.ts [out.png]     # default docs/dashboard.png
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { startCluster } from "../test/support/cluster.ts";
import { launchChromium } from "../test/dashboard/chromium.ts";
import { gw, privateSubnet, stopGateways } from "../test/gateway/support.ts";

const out = resolve(import.meta.dir, "..", process.argv[2] ?? "docs/dashboard.png");
const c = await startCluster({
  daemons: [
    { name: "a", hostname: "agent-a", tags: ["nlp", "summaries"] },
    { name: "b", hostname: "data-analyst" },
    { name: "c", hostname: "web-scraper" },
    { name: "d", hostname: "newcomer" },
  ],
});
const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
try {
  await c.trust("a", "b");
  await c.trust("a", "c");
  await c.pilot("d", ["handshake", String(c.daemon("a").nodeId), "summaries for the weekly report"]);
  await c.pilot("a", ["expose", "8080", "--to", `127.0.0.1:${http.port}`]);
  await c.pilot("b", ["send-message", "agent-a", "--data", "analysis ready: see task 7"]);
  await gw(c.daemon("a").env, ["start", "--subnet", privateSubnet(82).cidr, "--ports", String(20_000 + (process.pid % 20_000)), "data-analyst"]);
  const url = (await c.pilot("a", ["dashboard"])).json.data.url as string;
  const browser = await launchChromium({ width: 1400, height: 1640 });
  try {
    await browser.navigate(url);
    const until = Date.now() + 40_000;
    let i = 0;
    while (Date.now() < until) {
      await c.pilot(i % 2 ? "b" : "a", ["bench", i % 2 ? "agent-a" : "web-scraper", String(1 + (i % 3)), "--no-baseline"], { timeoutMs: 30_000 });
      await c.pilot("a", ["ping", "data-analyst", "--count", "2", "--interval", "300ms"]);
      await Bun.sleep(1500);
      i++;
    }
    await Bun.sleep(1500);
    writeFileSync(out, await browser.screenshot());
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
  }
} finally {
  http.stop(true);
  await stopGateways();
  await c.stop();
}
