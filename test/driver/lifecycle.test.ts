/**
 * What keeps an app's process alive: calls in flight, open sockets, listening
 * servers — but not an idle driver or a pooled keep-alive connection.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Driver } from "../../src/driver/index.ts";
import { startHarness, type Harness } from "./harness.ts";

let h: Harness;
let beta: Driver;
const driverModule = join(import.meta.dir, "../../src/driver/index.ts");

beforeAll(async () => {
  h = await startHarness();
  beta = await h.b.connect();
  await beta.serveHttp(80, (_req, res) => res.end("hi"));
});

afterAll(async () => {
  await h.close();
});

async function runApp(body: string, waitMs: number): Promise<{ exited: boolean; stdout: string }> {
  const script = `import { connect } from ${JSON.stringify(driverModule)};\nconst pilot = await connect({ socketPath: ${JSON.stringify(h.a.socketPath)} });\n${body}`;
  const child = Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "inherit" });
  const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(waitMs).then(() => false)]);
  if (!exited) child.kill();
  return { exited, stdout: await new Response(child.stdout).text() };
}

test("an app that fetches and returns exits by itself, without close()", async () => {
  const r = await runApp(`const res = await pilot.fetch("http://beta/"); console.log(await res.text());`, 5000);
  expect(r.stdout.trim()).toBe("hi");
  expect(r.exited).toBe(true);
});

test("a listening server keeps the app alive; unref() lets it go", async () => {
  const alive = await runApp(`await pilot.listen(90); console.log("listening");`, 1000);
  expect(alive.stdout.trim()).toBe("listening");
  expect(alive.exited).toBe(false);
  const gone = await runApp(`(await pilot.listen(91)).unref(); console.log("listening");`, 5000);
  expect(gone.exited).toBe(true);
});
