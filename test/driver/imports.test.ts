/**
 * Arrows point inward: the SDK (everything `src/driver/index.ts` reaches)
 * never imports the daemon or the CLI, and the daemon never imports the CLI.
 * What they share (errors, event types, control results, the version) lives
 * in `src/shared/`.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "../support/cluster.ts";

function reachable(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+\.ts)"/g)) todo.push(resolve(dirname(file), m[1]!));
  }
  return seen;
}

test("the SDK's import graph stays out of src/daemon and src/cli", () => {
  const files = [...reachable(join(ROOT, "src/driver/index.ts"))].map((f) => relative(ROOT, f));
  expect(files).toContain("src/shared/events.ts");
  expect(files).toContain("src/shared/errors.ts");
  expect(files.filter((f) => f.startsWith("src/daemon/") || f.startsWith("src/cli/"))).toEqual([]);
});

test("the daemon's import graph stays out of src/cli", () => {
  const daemonFiles = readdirSync(join(ROOT, "src/daemon"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  expect(daemonFiles.length).toBeGreaterThan(10);
  const offending: string[] = [];
  for (const f of daemonFiles) {
    for (const r of reachable(join(ROOT, "src/daemon", f))) {
      const rel = relative(ROOT, r);
      if (rel.startsWith("src/cli/")) offending.push(`src/daemon/${f} -> ${rel}`);
    }
  }
  expect(offending).toEqual([]);
});
