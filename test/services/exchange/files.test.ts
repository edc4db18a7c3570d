/**
 * File transfer between real daemons (port 1001), through the real CLI:
 * streamed, SHA-256 verified, written 0600 under PILOT_HOME/received/ with a
 * safe name whatever the sender offered, bounded by quotas, refused to
 * strangers and with --no-files, and resumed after a kill -9 of either side.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Database } from "bun:sqlite";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runPilot, startCluster, type Cluster } from "../../support/cluster.ts";
import { configure, isDead, rawExchange, waitFor } from "./support.ts";

setDefaultTimeout(180_000);

let c: Cluster;
let A: string;
let B: string;

function makeFile(name: string, bytes: number): { path: string; sha256: string } {
  const path = join(c.dir, name);
  const data = randomBytes(bytes);
  writeFileSync(path, data);
  return { path, sha256: createHash("sha256").update(data).digest("hex") };
}

function sha256Of(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

const receivedDir = (name: string) => join(c.daemon(name).home, "received");

beforeAll(async () => {
  c = await startCluster({ daemons: [{ name: "a", hostname: "file-a" }] });
  await c.startDaemon({ name: "b", hostname: "file-b", public: true });
  configure(c, "q", { files_quota: "4MiB" });
  await c.startDaemon({ name: "q", hostname: "file-q" });
  await c.startDaemon({ name: "c", hostname: "file-c" });
  await c.startDaemon({ name: "nofiles", hostname: "file-off", public: true, extraArgs: ["--no-files"] });
  await c.trust("b", "a");
  await c.trust("q", "a");
  A = c.daemon("a").address;
  B = c.daemon("b").address;
});
afterAll(async () => {
  await c?.stop();
});

describe("files", () => {
  test("send-file streams a file into received/ (0600, SHA-256 checked); received lists it; a name clash gets a suffix", async () => {
    const f = makeFile("report.bin", 3 * 1024 * 1024 + 17);
    const r = await c.pilot("a", ["send-file", "file-b", f.path]);
    expect(r.code).toBe(0);
    expect(r.json.data).toMatchObject({ target: B, name: "report.bin", bytes: 3 * 1024 * 1024 + 17, sha256: f.sha256, resumed_from: 0 });
    const stored = join(receivedDir("b"), "report.bin");
    expect(sha256Of(stored)).toBe(f.sha256);
    expect(statSync(stored).mode & 0o777).toBe(0o600);
    expect(statSync(receivedDir("b")).mode & 0o777).toBe(0o700);

    const list = await c.pilot("b", ["received"]);
    expect(list.json.data.files).toEqual([{ name: "report.bin", path: stored, bytes: 3 * 1024 * 1024 + 17, sha256: f.sha256, from: A, received_at: expect.any(String) }]);

    // The same file again: already there, nothing is sent or stored twice.
    const again = await c.pilot("a", ["send-file", "file-b", f.path]);
    expect(again.json.data).toMatchObject({ name: "report.bin", resumed_from: 3 * 1024 * 1024 + 17, sha256: f.sha256 });
    // Another file under the same name does not replace it.
    const g = makeFile("other.bin", 1000);
    const clash = await c.pilot("a", ["send-file", "file-b", g.path, "--name", "report.bin"]);
    expect(clash.json.data.name).toBe("report-1.bin");
    expect(sha256Of(stored)).toBe(f.sha256);
    expect(sha256Of(join(receivedDir("b"), "report-1.bin"))).toBe(g.sha256);

    // An empty file is a file too.
    const empty = makeFile("empty.txt", 0);
    const e = await c.pilot("a", ["send-file", "file-b", empty.path]);
    expect(e.json.data).toMatchObject({ name: "empty.txt", bytes: 0, sha256: empty.sha256 });
    expect(statSync(join(receivedDir("b"), "empty.txt")).size).toBe(0);

    const human = await c.pilot("b", ["received"], { json: false });
    expect(human.stdout).toContain("report-1.bin");
    const cleared = await c.pilot("b", ["received", "--clear"]);
    expect(cleared.json.data.cleared).toBe(3);
    expect(readdirSync(receivedDir("b"))).toEqual([]);
  });

  test("path-traversal names land safely under received/", async () => {
    const f = makeFile("payload.txt", 100);
    const names: [string, string][] = [
      ["../../etc/passwd", "passwd"],
      ["..", "file"],
      ["a/b/../../c.sh", "c.sh"],
      [".ssh/authorized_keys", "authorized_keys"],
    ];
    for (const [offered, expected] of names) {
      const r = await c.pilot("a", ["send-file", "file-b", f.path, "--name", offered]);
      expect({ offered, code: r.code, name: r.json?.data?.name }).toEqual({ offered, code: 0, name: expected });
    }
    // Names a command line cannot carry, straight on the wire: a NUL, control characters, 1000 bytes.
    const data = new TextEncoder().encode("raw bytes");
    const sha = new Uint8Array(createHash("sha256").update(data).digest());
    for (const [i, offered] of ["evil\u0000.txt\u0000/../../x", "\u001b[31mred\r\n.log", "../" + "a".repeat(990)].entries()) {
      const transfer = new Uint8Array(16).fill(i + 1);
      const answers = await rawExchange(c.daemon("a").home, B, [{ kind: "file_offer", transfer, size: data.length, name: offered }, { kind: "file_data", data }, { kind: "file_end", sha256: sha }], 2);
      expect(answers[0]).toMatchObject({ kind: "file_accept", offset: 0 });
      expect(answers[1]).toMatchObject({ kind: "file_done", size: data.length });
      const name = (answers[1] as { name: string }).name;
      expect(name).not.toMatch(/[\u0000-\u001f/\\]/);
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(200);
      expect(readFileSync(join(receivedDir("b"), name), "utf8")).toBe("raw bytes");
    }
    // Everything is a plain file directly in received/, and nothing escaped it.
    for (const name of readdirSync(receivedDir("b"))) {
      expect(name.startsWith(".")).toBe(false);
      expect(statSync(join(receivedDir("b"), name)).isFile()).toBe(true);
    }
    expect(existsSync(join(c.daemon("b").home, "..", "..", "etc", "passwd"))).toBe(false);
    expect(existsSync(join(c.daemon("b").home, "c.sh"))).toBe(false);
    await c.pilot("b", ["received", "--clear"]);
  });

  test("a stranger is refused; --no-files refuses; a missing file or bad value is a clear error", async () => {
    const f = makeFile("small.txt", 10);
    const stranger = await c.pilot("c", ["send-file", "file-b", f.path]);
    expect(stranger.code).toBe(1);
    expect(stranger.json.code).toBe("not_trusted");
    const off = await c.pilot("a", ["send-file", "file-off", f.path]);
    expect(off.code).toBe(1);
    expect(off.json.code).toBe("connection_refused");
    expect(off.json.message).toContain("switched off");
    const missing = await c.pilot("a", ["send-file", "file-b", join(c.dir, "no-such-file")]);
    expect(missing.code).toBe(1);
    expect(missing.json.code).toBe("not_found");
    for (const args of [["send-file", "file-b"], ["send-file", "file-b", f.path, "--timeout", "never"], ["send-file", "file-b", f.path, "--name", ""]]) {
      const r = await c.pilot("a", args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
    }
    expect(readdirSync(receivedDir("b"))).toEqual([]);
  });

  test("a peer over its quota gets quota_exceeded, a file over it too_large; clearing makes room", async () => {
    const three = makeFile("three.bin", 3 * 1024 * 1024);
    expect((await c.pilot("a", ["send-file", "file-q", three.path])).json.data.sha256).toBe(three.sha256);
    const again = makeFile("three-again.bin", 3 * 1024 * 1024);
    const over = await c.pilot("a", ["send-file", "file-q", again.path]);
    expect(over.code).toBe(1);
    expect(over.json.code).toBe("quota_exceeded");
    expect(over.json.hint).toContain("remove files");
    const five = makeFile("five.bin", 5 * 1024 * 1024);
    const big = await c.pilot("a", ["send-file", "file-q", five.path]);
    expect(big.code).toBe(1);
    expect(big.json.code).toBe("too_large");
    await c.pilot("q", ["received", "--clear"]);
    expect((await c.pilot("a", ["send-file", "file-q", again.path])).json.data.sha256).toBe(again.sha256);
    await c.pilot("q", ["received", "--clear"]);
    // A file as large as the quota fits an empty quota.
    const four = makeFile("four.bin", 4 * 1024 * 1024);
    expect((await c.pilot("a", ["send-file", "file-q", four.path])).json.data.sha256).toBe(four.sha256);
    await c.pilot("q", ["received", "--clear"]);
  });

  test("kill -9 of the receiving daemon at ~50 %: sending again resumes from what it stored, and the SHA-256 matches", async () => {
    const size = 96 * 1024 * 1024;
    const f = makeFile("big.bin", size);
    const partialDir = join(c.daemon("b").home, "files", "partial");
    const sending = c.pilot("a", ["send-file", "file-b", f.path, "--timeout", "2s"]);
    let atKill = 0;
    await waitFor("half the file at b", () => {
      const parts = existsSync(partialDir) ? readdirSync(partialDir) : [];
      atKill = parts.length ? statSync(join(partialDir, parts[0]!)).size : 0;
      return atKill >= size / 2;
    }, 60_000);
    const b = c.daemon("b");
    process.kill(b.pid, "SIGKILL");
    await waitFor("b to die", () => isDead(b.pid));
    const first = await sending;
    expect(first.code).toBe(1);
    expect(first.json.hint).toContain("resumes");

    await c.startDaemon({ name: "b", hostname: "file-b", public: true });
    const resumed = await c.pilot("a", ["send-file", "file-b", f.path]);
    expect(resumed.code).toBe(0);
    expect(resumed.json.data.sha256).toBe(f.sha256);
    // The machine did not restart, so everything the killed daemon had written counts (see files.ts).
    expect(resumed.json.data.resumed_from).toBeGreaterThanOrEqual(atKill);
    expect(resumed.json.data.resumed_from).toBeLessThan(size);
    expect(sha256Of(join(receivedDir("b"), "big.bin"))).toBe(f.sha256);
    // Nothing of the partial transfer is left behind.
    expect(readdirSync(partialDir)).toEqual([]);
    await c.pilot("b", ["received", "--clear"]);
  });

  test("after a machine restart (another boot id) only the fsynced part of a partial file counts", async () => {
    // Large enough that the receiver records a checkpoint (every 64 MiB or 5 s) before the kill.
    const size = 160 * 1024 * 1024;
    const f = makeFile("boot.bin", size);
    const dbPath = join(c.daemon("b").home, "files", "files.db");
    const sending = c.pilot("a", ["send-file", "file-b", f.path, "--timeout", "2s"]);
    await waitFor("a checkpoint at b", () => {
      const db = new Database(dbPath, { readonly: true });
      try {
        const row = db.query("SELECT durable FROM partial").get() as { durable: number } | null;
        return (row?.durable ?? 0) > 0;
      } finally {
        db.close();
      }
    }, 60_000);
    const b = c.daemon("b");
    process.kill(b.pid, "SIGKILL");
    await waitFor("b to die", () => isDead(b.pid));
    await sending;
    // Pretend the machine rebooted: the partial file was written during another boot.
    const db = new Database(join(c.daemon("b").home, "files", "files.db"));
    db.query("UPDATE partial SET boot = 'an-earlier-boot'").run();
    const { durable } = db.query("SELECT durable FROM partial").get() as { durable: number };
    db.close();
    expect(durable).toBeGreaterThan(0);
    await c.startDaemon({ name: "b", hostname: "file-b", public: true });
    const resumed = await c.pilot("a", ["send-file", "file-b", f.path]);
    expect(resumed.json.data).toMatchObject({ sha256: f.sha256, resumed_from: durable });
    expect(sha256Of(join(receivedDir("b"), "boot.bin"))).toBe(f.sha256);
    await c.pilot("b", ["received", "--clear"]);
  });

  test("kill -9 of the sending daemon mid-transfer: after its restart the same command resumes", async () => {
    const size = 96 * 1024 * 1024;
    const f = makeFile("big2.bin", size);
    const partialDir = join(c.daemon("b").home, "files", "partial");
    const sending = runPilot(["send-file", "file-b", f.path, "--json"], { env: c.daemon("a").env });
    await waitFor("a third of the file at b", () => {
      const parts = existsSync(partialDir) ? readdirSync(partialDir) : [];
      return parts.length > 0 && statSync(join(partialDir, parts[0]!)).size >= size / 3;
    }, 60_000);
    const a = c.daemon("a");
    process.kill(a.pid, "SIGKILL");
    await waitFor("a to die", () => isDead(a.pid));
    expect((await sending).code).toBe(1);
    await c.startDaemon({ name: "a", hostname: "file-a" });
    const resumed = await c.pilot("a", ["send-file", "file-b", f.path]);
    expect(resumed.code).toBe(0);
    expect(resumed.json.data).toMatchObject({ sha256: f.sha256, name: "big2.bin" });
    expect(resumed.json.data.resumed_from).toBeGreaterThan(0);
    expect(sha256Of(join(receivedDir("b"), "big2.bin"))).toBe(f.sha256);
    await c.pilot("b", ["received", "--clear"]);
  });
});
