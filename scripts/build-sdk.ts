/**
 * Builds the driver SDK as an npm package for Node.js (>= 20) and Bun, in
 * dist/sdk/:
 *
 *   index.js                  src/driver/index.ts as one ESM file (bun build --target=node),
 *                             every package it uses bundled in, so the package has no
 *                             dependencies and installs offline from its tarball alone
 *                             (today the SDK reaches no @noble/* code: its crypto is node:crypto)
 *   types/…/*.d.ts            declarations (tsc --emitDeclarationOnly), relative imports as .js
 *   package.json, README.md   (THIRD_PARTY_LICENSES.txt too, should a bundled package appear)
 *
 *   bun run build:sdk                  # dist/sdk/
 *   bun run build:sdk --pack [DIR]     # and `npm pack` it into DIR (default dist/): prints the tarball's path last
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

export const SDK_PACKAGE_NAME = "pilot-sdk";

const root = resolve(import.meta.dir, "..");
const out = join(root, "dist", "sdk");
const entry = join(root, "src", "driver", "index.ts");
const rootPkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string; license: string };

function fail(message: string): never {
  console.error(`build:sdk: ${message}`);
  process.exit(1);
}

const started = performance.now();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// 1. The JavaScript: one ESM file. Node built-ins stay imports; @noble/* is bundled.
const built = await Bun.build({ entrypoints: [entry], target: "node", format: "esm", outdir: out, naming: "index.js", metafile: true });
if (!built.success) fail(built.logs.map(String).join("\n"));
const bundled = Object.keys(built.metafile?.inputs ?? {});
for (const f of bundled) {
  if (/(^|\/)src\/(daemon|cli)\//.test(f)) fail(`the SDK bundle reaches ${f}`);
}

// 2. The declarations. TypeScript 7 emits them from the source as it is (.ts
// import specifiers); consumers resolve .js, so the specifiers are rewritten.
const types = join(out, "types");
const tsc = spawnSync(
  process.execPath,
  [
    join(root, "node_modules", "typescript", "bin", "tsc"),
    "--ignoreConfig",
    "--declaration",
    "--emitDeclarationOnly",
    "--allowImportingTsExtensions",
    "--verbatimModuleSyntax",
    "--strict",
    "--skipLibCheck",
    "--target", "esnext",
    "--module", "preserve",
    "--moduleResolution", "bundler",
    "--types", "bun",
    "--rootDir", join(root, "src"),
    "--outDir", types,
    entry,
  ],
  { cwd: root, stdio: "inherit" },
);
if (tsc.status !== 0) fail(`tsc failed (exit ${tsc.status})`);
let declarations = 0;
for (const f of readdirSync(types, { recursive: true, encoding: "utf8" })) {
  if (!f.endsWith(".d.ts")) continue;
  const path = join(types, f);
  const text = readFileSync(path, "utf8").replace(/(from\s+|import\s*\(\s*)"(\.{1,2}\/[^"]+)\.ts"/g, '$1"$2.js"');
  const foreign = text.match(/^(?:import|export)\b[^\n]*\bfrom\s+"(?!node:|\.)[^"]+"/m);
  if (foreign) fail(`${f} imports a package the SDK does not ship: ${foreign[0]}`);
  writeFileSync(path, text);
  declarations++;
}

// 3. The manifest, the README and the licences of what is bundled.
const pkg = {
  name: SDK_PACKAGE_NAME,
  version: rootPkg.version,
  description: "The Pilot driver SDK for Node.js and Bun: encrypted peer-to-peer streams, HTTP and events between AI agents, through the local Pilot daemon.",
  type: "module",
  license: rootPkg.license,
  main: "./index.js",
  types: "./types/driver/index.d.ts",
  exports: {
    ".": { types: "./types/driver/index.d.ts", default: "./index.js" },
    "./package.json": "./package.json",
  },
  files: ["index.js", "types", "README.md"],
  sideEffects: false,
  engines: { node: ">=20" },
  keywords: ["pilot", "overlay", "p2p", "agents", "sdk"],
};
const licences = [...new Set(bundled.map((f) => f.match(/node_modules\/(@[^/]+\/[^/]+|[^@/][^/]*)\//)?.[1]).filter((p): p is string => !!p))].sort();
if (licences.length > 0) {
  pkg.files.push("THIRD_PARTY_LICENSES.txt");
  writeFileSync(
    join(out, "THIRD_PARTY_LICENSES.txt"),
    licences
      .map((name) => {
        const dir = join(root, "node_modules", name);
        const version = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
        const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
        if (!file) fail(`no licence file in ${relative(root, dir)}`);
        return `${name}@${version}\n\n${readFileSync(join(dir, file), "utf8").trim()}\n`;
      })
      .join("\n" + "-".repeat(72) + "\n\n"),
  );
}
writeFileSync(join(out, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
cpSync(join(root, "src", "driver", "README.md"), join(out, "README.md"));

const size = readFileSync(join(out, "index.js")).length;
console.log(
  `built ${relative(root, out)}/ (${SDK_PACKAGE_NAME}@${pkg.version}: index.js ${(size / 1024).toFixed(0)} KiB, ${declarations} declaration files, bundled ${licences.join(", ") || "nothing"}) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
);

// 4. Optionally the tarball.
const packAt = process.argv.indexOf("--pack");
if (packAt > 0) {
  const next = process.argv[packAt + 1];
  const dest = resolve(next && !next.startsWith("--") ? next : join(root, "dist"));
  mkdirSync(dest, { recursive: true });
  const pack = spawnSync("npm", ["pack", "--json", "--pack-destination", dest], { cwd: out, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (pack.status !== 0) fail(`npm pack failed (exit ${pack.status})`);
  const [info] = JSON.parse(pack.stdout) as { filename: string; size: number; entryCount: number }[];
  if (!info) fail("npm pack printed no result");
  console.log(`packed ${info.entryCount} files, ${(info.size / 1024).toFixed(0)} KiB:`);
  console.log(join(dest, info.filename));
}
