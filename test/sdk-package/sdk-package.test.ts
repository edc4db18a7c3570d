/**
 * The SDK as users get it: `bun run build:sdk --pack` makes the tarball, which
 * is installed with npm (offline: it has no dependencies) into a fresh folder,
 * and one plain-JavaScript app (app.mjs) runs against two real daemons under
 * each runtime the package supports, with the same assertions:
 *
 *   system Node (`node` on PATH; Node 20 here and in CI)
 *   Node 22, from $PILOT_NODE22 (.ci/run installs it from npm: `npm install node@22`);
 *     without it that case is skipped, loudly
 *   Bun (the one running this test)
 *
 * express is linked in from the repo's own node_modules (no registry needed).
 * A TypeScript consumer is type-checked against the packed declarations too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startCluster, type Cluster } from "../support/cluster.ts";

const HAVE_NODE = spawnSync("node", ["--version"]).status === 0 && spawnSync("npm", ["--version"]).status === 0;
if (!HAVE_NODE) {
  console.warn("\n!!! test/sdk-package: no node and npm on PATH: the packed SDK is NOT TESTED (install Node.js >= 20 with npm).\n");
}
const NODE22 = process.env.PILOT_NODE22;
if (HAVE_NODE && !NODE22) {
  console.warn(
    "\n!!! test/sdk-package: PILOT_NODE22 is not set: the Node 22 case is SKIPPED.\n" +
      "!!! Install it as CI does: npm install --prefix /tmp/pilot-node22 node@22 && export PILOT_NODE22=/tmp/pilot-node22/node_modules/.bin/node\n",
  );
}

let dir: string;
let appDir: string;
let tarball: string;
let cluster: Cluster;

function run(command: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: appDir,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? dir,
        PILOT_APP_HOME_A: cluster.daemon("a").home,
        PILOT_APP_HOME_B: cluster.daemon("b").home,
        PILOT_APP_PEER: "pkg-b",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${command.join(" ")} did not finish within ${timeoutMs} ms (an SDK handle kept it alive?)\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe.skipIf(!HAVE_NODE)("the packed SDK", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "pilot-sdk-package-"));
    // The tarball, as a user would get it.
    const build = spawnSync(process.execPath, [join(ROOT, "scripts", "build-sdk.ts"), "--pack", join(dir, "pack")], { cwd: ROOT, encoding: "utf8" });
    if (build.status !== 0) throw new Error(`build:sdk failed: ${build.stdout}\n${build.stderr}`);
    tarball = build.stdout.trim().split("\n").at(-1)!;
    if (!existsSync(tarball)) throw new Error(`build:sdk printed no tarball: ${build.stdout}`);

    // A fresh app folder: npm installs the tarball (offline), express comes from the repo.
    appDir = join(dir, "app");
    spawnSync("mkdir", ["-p", appDir]);
    writeFileSync(join(appDir, "package.json"), JSON.stringify({ name: "pilot-sdk-app", private: true, type: "module" }));
    const install = spawnSync("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball], { cwd: appDir, encoding: "utf8" });
    if (install.status !== 0) throw new Error(`npm install of the tarball failed: ${install.stdout}\n${install.stderr}`);
    symlinkSync(join(ROOT, "node_modules", "express"), join(appDir, "node_modules", "express"));
    copyFileSync(join(import.meta.dir, "app.mjs"), join(appDir, "app.mjs"));

    cluster = await startCluster({ daemons: [{ name: "a", hostname: "pkg-a" }, { name: "b", hostname: "pkg-b" }] });
    await cluster.trust("a", "b");
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the tarball holds compiled JavaScript, declarations and a manifest for Node >= 20, and no dependencies", () => {
    const pkg = JSON.parse(readFileSync(join(appDir, "node_modules", "pilot-sdk", "package.json"), "utf8"));
    expect(pkg.name).toBe("pilot-sdk");
    expect(pkg.engines).toEqual({ node: ">=20" });
    expect(pkg.dependencies).toBeUndefined();
    expect(pkg.exports["."]).toEqual({ types: "./types/driver/index.d.ts", default: "./index.js" });
    const installed = join(appDir, "node_modules", "pilot-sdk");
    expect(existsSync(join(installed, "index.js"))).toBe(true);
    expect(existsSync(join(installed, "types", "driver", "index.d.ts"))).toBe(true);
    expect(existsSync(join(installed, "README.md"))).toBe(true);
    const js = readFileSync(join(installed, "index.js"), "utf8");
    // Only Node built-ins are imported; nothing of the daemon or the CLI is inside.
    expect([...js.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]).filter((s) => !s!.startsWith("node:"))).toEqual([]);
    expect(js).not.toContain("src/daemon/");
    expect(existsSync(join(installed, "types", "daemon"))).toBe(false);
    expect(existsSync(join(installed, "types", "cli"))).toBe(false);
  });

  test("a TypeScript app type-checks against the packed declarations (module nodenext, @types/node)", () => {
    writeFileSync(
      join(appDir, "consumer.ts"),
      [
        'import { connect, NodeError, type Driver, type PilotSocket, type PilotHttpServer } from "pilot-sdk";',
        "const d: Driver = await connect({ home: '/nowhere' });",
        "const s: PilotSocket = await d.dial('agent-b', 1000);",
        "s.end('hello');",
        "const served: PilotHttpServer = await d.serveHttp(80, (req, res) => res.end(req.url));",
        "const res: Response = await d.fetch('http://agent-b/');",
        "const e = new NodeError('timeout', 'x');",
        "const code: string = e.code;",
        "void served; void res; void code;",
        "// @ts-expect-error: no such method",
        "d.noSuchMethod();",
      ].join("\n"),
    );
    const tsc = spawnSync(
      process.execPath,
      [
        join(ROOT, "node_modules", "typescript", "bin", "tsc"),
        "--ignoreConfig",
        "--noEmit",
        "--strict",
        "--target", "es2022",
        "--module", "nodenext",
        "--moduleResolution", "nodenext",
        "--lib", "es2022,dom",
        "--types", "node",
        "--typeRoots", join(ROOT, "node_modules", "@types"),
        "consumer.ts",
      ],
      { cwd: appDir, encoding: "utf8" },
    );
    expect(tsc.stdout + tsc.stderr).toBe("");
    expect(tsc.status).toBe(0);
  });

  const runtimes: { name: string; command: () => string[]; skip?: boolean; expectRuntime: string }[] = [
    { name: "system Node (node on PATH)", command: () => ["node", "app.mjs"], expectRuntime: "node" },
    { name: "Node 22 ($PILOT_NODE22)", command: () => [NODE22!, "app.mjs"], skip: !NODE22, expectRuntime: "node" },
    { name: "Bun", command: () => [process.execPath, "app.mjs"], expectRuntime: "bun" },
  ];

  for (const runtime of runtimes) {
    test.skipIf(!!runtime.skip)(`the same app under ${runtime.name}: node:http via serveHttp, fetch through Pilot, express, the secure channel, datagrams, messages and events`, async () => {
      const r = await run(runtime.command());
      if (r.code !== 0) throw new Error(`app exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
      expect(out.runtime).toBe(runtime.expectRuntime);
      if (runtime.name.startsWith("Node 22")) expect(out.version).toStartWith("22.");
      if (out.runtime === "node") expect(Number(out.version.split(".")[0])).toBeGreaterThanOrEqual(20);
      const a = cluster.daemon("a").address;
      const b = cluster.daemon("b").address;
      expect(out.addresses).toEqual({ a, b });
      expect(out.plain).toEqual({ status: 200, type: "application/json", body: { server: "node:http", method: "GET", url: "/status?x=1", from: a } });
      expect(out.express).toEqual({ status: 200, body: { server: "express", got: { n: 42, list: [1, 2, 3] } } });
      expect(out.agent).toEqual({ status: 200, body: { server: "express", hello: "world" } });
      expect(out.upload.status).toBe(200);
      expect(out.upload.body).toEqual({ bytes: 1 << 20, sha256: out.upload.expected });
      expect(out.secure).toEqual({ status: 200, body: `secret for ${a}` });
      expect(out.refused).toEqual({ isNodeError: true, code: "connection_refused" });
      expect(out.datagram).toEqual({ from: b, fromPort: 5000, text: "pong ping" });
      expect(out.message).toEqual({ state: "delivered", stored: true, event: { type: "message.received", from: a, kind: "json" }, text: { hello: out.runtime } });
      expect(out.trusted).toEqual([b]);
      console.log(`  ${runtime.name}: ${out.runtime} ${out.version} ok`);
    }, 45_000);
  }
});
