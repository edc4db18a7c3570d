/**
 * The 30 s default of default-timeout.ts reaches every file of a run, not only
 * the first: a later file's hook that takes longer than Bun's 5 s still passes.
 */
import { afterAll, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "pilot-timeout-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a hook in the second file of a run may take longer than 5 s", async () => {
  mkdirSync(join(dir, "test/support"), { recursive: true });
  cpSync(join(ROOT, "bunfig.toml"), join(dir, "bunfig.toml"));
  cpSync(join(ROOT, "test/support/default-timeout.ts"), join(dir, "test/support/default-timeout.ts"));
  writeFileSync(join(dir, "a.test.ts"), `import { expect, test } from "bun:test";\ntest("first", () => expect(1).toBe(1));\n`);
  writeFileSync(join(dir, "b.test.ts"), `import { beforeAll, expect, test } from "bun:test";\nbeforeAll(() => Bun.sleep(5_300));\ntest("second", () => expect(1).toBe(1));\n`);
  const p = Bun.spawn([process.execPath, "test", "./a.test.ts", "./b.test.ts"], { cwd: dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect({ code, tail: (out + err).trim().split("\n").slice(-4) }).toMatchObject({ code: 0 });
});
