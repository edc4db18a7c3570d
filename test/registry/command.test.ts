/** `pilot rendezvous` as a command: its arguments, its errors, its ready output. */
import { afterAll, expect, test } from "bun:test";
import { resolve } from "node:path";
import { startRendezvous, stopAll, tempDir } from "./helpers.ts";

afterAll(stopAll);
const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(["bun", MAIN, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, PILOT_HOME: tempDir() } });
  const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

test("a malformed address is invalid_argument (a usage mistake: exit 2) with a hint", async () => {
  const r = await run(["rendezvous", "--json", "--registry-addr", "localhost:9000"]);
  expect(r.code).toBe(2);
  const e = JSON.parse(r.stderr.trim().split("\n").at(-1)!);
  expect(e).toMatchObject({ status: "error", code: "invalid_argument" });
  expect(e.hint).toContain("--registry-addr");
  const bad = await run(["rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--log-format", "xml"]);
  expect(JSON.parse(bad.stderr.trim().split("\n").at(-1)!).code).toBe("invalid_argument");
});

test("a port in use is already_exists", async () => {
  const first = await startRendezvous();
  const r = await run(["rendezvous", "--json", "--registry-addr", `127.0.0.1:${first.port}`, "--beacon-addr", "127.0.0.1:0", "--store", `${tempDir()}/r.db`]);
  expect(r.code).toBe(1);
  expect(JSON.parse(r.stderr.trim().split("\n").at(-1)!)).toMatchObject({ status: "error", code: "already_exists" });
});

test("text mode says where it listens and logs key=value lines", async () => {
  const dir = tempDir();
  const p = Bun.spawn(["bun", MAIN, "rendezvous", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--store", `${dir}/r.db`], { stdout: "pipe", stderr: "pipe" });
  try {
    const reader = p.stdout.getReader();
    let out = "";
    while (!out.includes("store")) {
      const chunk = await Promise.race([reader.read(), Bun.sleep(10_000).then(() => ({ done: true, value: undefined }))]);
      if (chunk.done) break;
      out += new TextDecoder().decode(chunk.value);
    }
    expect(out).toMatch(/registry +tcp 127\.0\.0\.1:\d+/);
    expect(out).toMatch(/beacon +udp 127\.0\.0\.1:\d+/);
    expect(out).toMatch(/public key +[A-Za-z0-9+/]{43}=/);
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    const logs = await new Response(p.stderr).text();
    expect(logs).toMatch(/INFO +rendezvous: listening registry=127\.0\.0\.1:\d+/);
    expect(logs).toContain("rendezvous: stopped");
  } finally {
    if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  }
});

test("the command is in pilot context with its options and errors", async () => {
  const r = await run(["context", "--json"]);
  const ctx = JSON.parse(r.stdout).data.commands.rendezvous;
  expect(ctx.options.map((o: { flags: string }) => o.flags)).toContain("--registry-addr <addr>");
  expect(ctx.returns).toHaveProperty("public_key");
  expect(ctx.errors).toContain("already_exists");
});

test("limit options are checked: a bad duration, count or bit count is invalid_argument (exit 2)", async () => {
  for (const bad of [["--reap-after", "forever"], ["--reap-after", "0s"], ["--auth-timeout", "1x"], ["--pow-bits", "40"], ["--max-connections-per-prefix", "many"], ["--pow-free-rate", "0"]]) {
    const r = await run(["rendezvous", "--json", "--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", ...bad]);
    expect([r.code, JSON.parse(r.stderr.trim().split("\n").at(-1)!).code, bad]).toEqual([2, "invalid_argument", bad]);
  }
  const ctx = JSON.parse((await run(["context", "--json"])).stdout).data.commands.rendezvous;
  const flags = ctx.options.map((o: { flags: string }) => o.flags);
  for (const f of ["--reap-after <duration>", "--max-connections <n>", "--max-connections-per-prefix <n>", "--auth-timeout <duration>", "--pow-bits <n>", "--prefix-registration-rate <n>"]) expect(flags).toContain(f);
});
