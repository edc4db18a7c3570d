/**
 * Builds the single self-contained executable `dist/pilot` (daemon, rendezvous,
 * gateway and every CLI command) with `bun build --compile`, plus a `pilotctl`
 * link to it. `--bytecode` halves start-up time; it needs `--format=esm`
 * because a dependency uses `import.meta`.
 *
 *   bun run build            # dist/pilot for this machine
 *   bun run build --target bun-linux-arm64   # cross-compile
 */
import { existsSync, lstatSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const dist = join(root, "dist");
const outfile = join(dist, "pilot");
const targetIndex = process.argv.indexOf("--target");
const target = targetIndex > 0 ? process.argv[targetIndex + 1] : undefined;

mkdirSync(dist, { recursive: true });
const args = ["build", "src/cli/main.ts", "--compile", "--bytecode", "--format=esm", "--minify-syntax", "--outfile", outfile];
if (target) args.push("--target", target);

const started = performance.now();
const build = Bun.spawnSync(["bun", ...args], { cwd: root, stdout: "inherit", stderr: "inherit" });
if (build.exitCode !== 0) {
  console.error(`build failed (exit ${build.exitCode})`);
  process.exit(1);
}

const link = join(dist, "pilotctl");
if (existsSync(link) || isDanglingLink(link)) rmSync(link);
symlinkSync("pilot", link);

const check = Bun.spawnSync([outfile, "--version"], { cwd: "/" });
const version = check.stdout.toString().trim();
if (check.exitCode !== 0 || !version.startsWith("pilot ")) {
  console.error(`built binary does not run: ${check.stderr.toString()}`);
  process.exit(1);
}
console.log(`built ${outfile} (${version}) in ${((performance.now() - started) / 1000).toFixed(1)} s; pilotctl -> pilot`);

function isDanglingLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
