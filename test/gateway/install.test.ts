/**
 * `pilot install` / `pilot uninstall` into temporary prefixes (never the
 * machine's /usr/local): from source (a launcher script for this checkout),
 * from the compiled binary when one is built (PILOT_BIN or dist/pilot), a
 * foreign `pilot` left alone, and a prefix the user may not write to (as
 * nobody, through setpriv, when root).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ROOT } from "../support/cluster.ts";
import { IS_ROOT } from "./support.ts";

const dir = mkdtempSync("/tmp/pilot-install-");
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

function run(argv: string[]): Run {
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
  let json: any;
  try {
    json = JSON.parse((r.status === 0 ? r.stdout : r.stderr).trim().split("\n").pop() ?? "");
  } catch {
    json = undefined;
  }
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

const fromSource = (...args: string[]) => run([process.execPath, join(ROOT, "src/cli/main.ts"), ...args]);

function compiledBinary(): string | null {
  const candidates = [process.env.PILOT_BIN, "dist/pilot"].filter((p): p is string => !!p).map((p) => resolve(ROOT, p));
  return candidates.find((p) => existsSync(p)) ?? null;
}

describe("pilot install / uninstall", () => {
  test("from source: a launcher for this checkout and a pilotctl link; both run; uninstall removes them", () => {
    const prefix = join(dir, "src-prefix");
    const r = fromSource("install", "--prefix", prefix, "--json");
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.json.data).toEqual({
      prefix,
      bin_dir: join(prefix, "bin"),
      pilot: join(prefix, "bin/pilot"),
      pilotctl: join(prefix, "bin/pilotctl"),
      kind: "launcher",
      source: join(ROOT, "src/cli/main.ts"),
      bun: process.execPath,
      replaced: false,
      on_path: false,
    });
    const script = readFileSync(join(prefix, "bin/pilot"), "utf8");
    expect(script).toContain(`'${process.execPath}' '${join(ROOT, "src/cli/main.ts")}' "$@"`);
    expect(lstatSync(join(prefix, "bin/pilot")).mode & 0o777).toBe(0o755);
    expect(readlinkSync(join(prefix, "bin/pilotctl"))).toBe("pilot");

    // Both names run, from anywhere, and pilotctl calls itself pilotctl.
    const v = run([join(prefix, "bin/pilotctl"), "version", "--json"]);
    expect(v.json.data.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(run([join(prefix, "bin/pilotctl"), "--help"]).stdout).toContain("$ pilotctl <command>");
    expect(run([join(prefix, "bin/pilot"), "--help"]).stdout).toContain("$ pilot <command>");

    // Human output says what was installed; installing again replaces it.
    const again = fromSource("install", "--prefix", prefix);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`installed ${join(prefix, "bin/pilot")}, a launcher that runs this checkout`);
    expect(again.stdout).toContain(`note: ${join(prefix, "bin")} is not on your PATH`);

    const un = fromSource("uninstall", "--prefix", prefix, "--json");
    expect(un.json.data).toEqual({ prefix, removed: [join(prefix, "bin/pilotctl"), join(prefix, "bin/pilot")] });
    expect(existsSync(join(prefix, "bin/pilot"))).toBe(false);
    expect(existsSync(join(prefix, "bin/pilotctl"))).toBe(false);
    const none = fromSource("uninstall", "--prefix", prefix, "--json");
    expect({ code: none.code, error: none.json.code }).toEqual({ code: 1, error: "not_found" });
  });

  test("a pilot that is not Pilot's is neither replaced nor removed without --force", () => {
    const prefix = join(dir, "foreign");
    mkdirSync(join(prefix, "bin"), { recursive: true });
    writeFileSync(join(prefix, "bin/pilot"), "#!/bin/sh\necho another pilot\n", { mode: 0o755 });
    const r = fromSource("install", "--prefix", prefix, "--json");
    expect({ code: r.code, error: r.json.code }).toEqual({ code: 1, error: "already_exists" });
    expect(r.json.message).toBe(`${join(prefix, "bin/pilot")} exists and is not Pilot's`);
    expect(readFileSync(join(prefix, "bin/pilot"), "utf8")).toContain("another pilot");
    const u = fromSource("uninstall", "--prefix", prefix, "--json");
    expect(u.json.code).toBe("invalid_argument");
    expect(readFileSync(join(prefix, "bin/pilot"), "utf8")).toContain("another pilot");

    const forced = fromSource("install", "--prefix", prefix, "--force", "--json");
    expect(forced.json.data).toMatchObject({ kind: "launcher", replaced: true });
    expect(fromSource("uninstall", "--prefix", prefix, "--json").code).toBe(0);
  });

  test("bad --prefix values are usage errors (exit 2); ~/ is expanded", () => {
    const r = fromSource("install", "--prefix", "", "--json");
    expect({ code: r.code, error: r.json?.code }).toEqual({ code: 2, error: "usage" });
    const home = join(dir, "home");
    mkdirSync(home);
    const t = run(["env", `HOME=${home}`, process.execPath, join(ROOT, "src/cli/main.ts"), "install", "--prefix", "~/.local", "--json"]);
    expect(t.json.data.pilot).toBe(join(home, ".local/bin/pilot"));
  });

  const binary = compiledBinary();
  test.skipIf(binary === null)("from the compiled binary: a copy of it, recognised again by uninstall", () => {
    const prefix = join(dir, "bin-prefix");
    const r = run([binary!, "install", "--prefix", prefix, "--json"]);
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.json.data).toMatchObject({ kind: "binary", source: binary, pilot: join(prefix, "bin/pilot") });
    expect(lstatSync(join(prefix, "bin/pilot")).size).toBe(lstatSync(binary!).size);
    expect(run([join(prefix, "bin/pilotctl"), "--help"]).stdout).toContain("$ pilotctl <command>");
    const un = run([join(prefix, "bin/pilot"), "uninstall", "--prefix", prefix, "--json"]);
    expect(un.json.data.removed).toEqual([join(prefix, "bin/pilotctl"), join(prefix, "bin/pilot")]);
  });

  const hasSetpriv = spawnSync("setpriv", ["--version"]).status === 0;
  test.skipIf(!IS_ROOT || !hasSetpriv)("a prefix the user may not write to: unauthorized, with sudo and --prefix ~/.local as hints", () => {
    const prefix = join(dir, "root-only");
    mkdirSync(join(prefix, "bin"), { recursive: true, mode: 0o755 });
    const nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    const r = run([...nobody, process.execPath, join(ROOT, "src/cli/main.ts"), "install", "--prefix", prefix, "--json"]);
    expect({ code: r.code, error: r.json?.code }).toEqual({ code: 1, error: "unauthorized" });
    expect(r.json.message).toBe(`cannot write to ${join(prefix, "bin")}: permission denied`);
    expect(r.json.hint).toContain(`install as root: sudo '${process.execPath}' '${join(ROOT, "src/cli/main.ts")}' install`);
    expect(r.json.hint).toContain("pilot install --prefix ~/.local");
    expect(existsSync(join(prefix, "bin/pilot"))).toBe(false);
  });
});
