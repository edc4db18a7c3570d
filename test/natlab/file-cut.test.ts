/**
 * `pilot send-file` across a NETWORK CUT: h1 (behind nat1) sends a file to
 * the public host pub, and in the middle of the transfer nat1 drops every
 * packet it forwards (nft, both directions) for a few seconds, then lets
 * them through again. What the code does (src/daemon/services/exchange/files.ts,
 * OutgoingTransfer.run):
 *
 *   - a cut shorter than `--timeout`: the same command completes. The stream
 *     may ride the cut out (retransmissions), or, if it stalled for
 *     `--timeout`, the sender redials and the receiver answers the new offer
 *     with the offset it holds (the log's `resumed_from` tells which);
 *   - a cut longer than `--timeout`: the command fails with a hint to run it
 *     again, and running it again resumes: `resumed_from` > 0, at least what
 *     the receiver had when the cut began, and the SHA-256 matches.
 *
 * Same prerequisites and skip rules as natlab.test.ts (root, ip, nft).
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatLab } from "./lab.ts";
import { natlabSuite, useLab, type LabDaemon, type LabPilot } from "./support.ts";
import { runPilot } from "../support/cluster.ts";

natlabSuite("file transfer across a network cut", "send-file resuming after a network cut", fileCut);

function fileCut(): void {
  let lab: NatLab;
  let pilot: LabPilot;
  const notes: string[] = [];
  const fixture = useLab({ report: () => (notes.length ? `\nsend-file across a network cut:\n${notes.join("\n")}\n` : undefined) });
  beforeAll(() => {
    lab = fixture.lab;
    pilot = fixture.pilot;
  });

  /** A file of `mib` MiB (1 MiB of random bytes repeated, each copy with its index stamped in) and its SHA-256. */
  function makeFile(name: string, mib: number): { path: string; sha256: string; size: number } {
    const path = join(pilot.dir, name);
    const block = randomBytes(1 << 20);
    const hash = createHash("sha256");
    const parts: Buffer[] = [];
    for (let i = 0; i < mib; i++) {
      const b = Buffer.from(block);
      b.writeUInt32BE(i, 0);
      hash.update(b);
      parts.push(b);
    }
    writeFileSync(path, Buffer.concat(parts));
    return { path, sha256: hash.digest("hex"), size: mib << 20 };
  }

  function partialBytes(d: LabDaemon): number {
    const dir = join(d.home, "files", "partial");
    const parts = existsSync(dir) ? readdirSync(dir) : [];
    return parts.length ? statSync(join(dir, parts[0]!)).size : 0;
  }

  async function waitUntil(what: string, check: () => boolean, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await Bun.sleep(20);
    }
  }

  /** `resumed_from` of the receiver's last `file received` log line (the daemon logs text: `key=value`). */
  function lastResumedFrom(d: LabDaemon): number | undefined {
    const lines = d.log().split("\n").filter((l) => l.includes("file received"));
    const m = /resumed_from=(\d+)/.exec(lines.at(-1) ?? "");
    return m ? Number(m[1]) : undefined;
  }

  /** Cuts (or restores) everything nat1 forwards, both directions: an nft drop rule of its own table. Returns the packets dropped. */
  function cut(on: boolean): number {
    const listed = lab.exec("nat1", ["nft", "list", "table", "inet", "pilotcut"]);
    const dropped = Number(/counter packets (\d+)/.exec(listed.stdout)?.[1] ?? 0);
    lab.exec("nat1", ["nft", "delete", "table", "inet", "pilotcut"]);
    if (on) {
      const r = lab.exec("nat1", ["nft", "-f", "-"], "table inet pilotcut {\n  chain forward { type filter hook forward priority -150; policy accept;\n    counter drop\n  }\n}\n");
      if (r.code !== 0) throw new Error(`nft cut on nat1: ${r.stderr.trim()}`);
    }
    return dropped;
  }

  async function withPair(body: (h1: LabDaemon, pub: LabDaemon) => Promise<void>): Promise<void> {
    try {
      const h1 = await pilot.daemon("h1");
      // The two are strangers: pub opens its file service to them (both are public nodes).
      const pub = await pilot.daemon("pub", {}, ["--open-services", "files"]);
      await body(h1, pub);
    } finally {
      cut(false);
      await pilot.stopDaemon("h1");
      await pilot.stopDaemon("pub");
    }
  }

  describe("send-file h1 -> pub, nat1 dropping everything for a while", () => {
    test(
      "a cut shorter than --timeout: the same command completes, byte-exact",
      async () => {
        await withPair(async (h1, pub) => {
          const f = makeFile("cut-short.bin", 192);
          const sending = runPilot(["send-file", pub.address, f.path, "--timeout", "20s", "--json"], { env: { PILOT_HOME: h1.home }, timeoutMs: 120_000 });
          await waitUntil("a quarter of the file at pub", () => partialBytes(pub) >= f.size / 4, 60_000);
          const atCut = partialBytes(pub);
          cut(true);
          const cutAt = Date.now();
          // What was in flight and waiting for the disk lands in the first seconds; then nothing may.
          await Bun.sleep(2500);
          const early = partialBytes(pub);
          await Bun.sleep(3500);
          const late = partialBytes(pub);
          expect(cut(false)).toBeGreaterThan(0);
          const r = await sending;
          expect({ code: r.code, stderr: r.stderr.slice(-400) }).toEqual({ code: 0, stderr: expect.any(String) });
          expect(r.json.data).toMatchObject({ name: "cut-short.bin", bytes: f.size, sha256: f.sha256 });
          const stored = join(pub.home, "received", "cut-short.bin");
          expect(createHash("sha256").update(readFileSync(stored)).digest("hex")).toBe(f.sha256);
          // The cut was real: the partial file did not grow while it lasted (after what was in flight landed).
          expect(late).toBe(early);
          expect(late).toBeLessThan(f.size);
          const resumedFrom = lastResumedFrom(pub);
          notes.push(`  cut 6 s at ${(atCut / 2 ** 20).toFixed(0)} MiB of ${f.size / 2 ** 20}: same command completed in ${((Date.now() - cutAt) / 1000).toFixed(1)} s after the cut began; receiver's resumed_from ${resumedFrom ?? "?"} (0: the stream rode the cut out; > 0: the sender redialled)`);
          rmSync(stored);
        });
      },
      180_000,
    );

    test(
      "a cut that stalls the stream past --timeout but ends before the redial gives up: the same command redials and resumes",
      async () => {
        await withPair(async (h1, pub) => {
          const f = makeFile("cut-redial.bin", 192);
          // --timeout 6s: the stream stalls for 6 s (nothing drains), the sender redials (a dial waits up to 6 s);
          // the cut ends 7.5 s after it began, so a SYN retransmission of that dial gets through.
          const sending = runPilot(["send-file", pub.address, f.path, "--timeout", "6s", "--json"], { env: { PILOT_HOME: h1.home }, timeoutMs: 120_000 });
          await waitUntil("a quarter of the file at pub", () => partialBytes(pub) >= f.size / 4, 60_000);
          const atCut = partialBytes(pub);
          cut(true);
          await Bun.sleep(7500);
          expect(cut(false)).toBeGreaterThan(0);
          const r = await sending;
          expect({ code: r.code, err: r.json?.message }).toEqual({ code: 0, err: undefined });
          expect(r.json.data).toMatchObject({ name: "cut-redial.bin", bytes: f.size, sha256: f.sha256 });
          // The command's resumed_from is the first offer's answer (0); the receiver logs where the second one resumed.
          expect(r.json.data.resumed_from).toBe(0);
          const resumedFrom = lastResumedFrom(pub);
          expect(resumedFrom).toBeGreaterThanOrEqual(atCut);
          expect(resumedFrom).toBeLessThan(f.size);
          expect(createHash("sha256").update(readFileSync(join(pub.home, "received", "cut-redial.bin"))).digest("hex")).toBe(f.sha256);
          notes.push(`  cut 7.5 s (--timeout 6s) at ${(atCut / 2 ** 20).toFixed(0)} MiB: same command redialled; receiver resumed from ${((resumedFrom ?? 0) / 2 ** 20).toFixed(1)} MiB`);
        });
      },
      180_000,
    );

    test(
      "a cut longer than --timeout: the command fails saying it resumes; running it again resumes from what pub stored",
      async () => {
        await withPair(async (h1, pub) => {
          const f = makeFile("cut-long.bin", 192);
          const args = ["send-file", pub.address, f.path, "--timeout", "3s", "--json"];
          const sending = runPilot(args, { env: { PILOT_HOME: h1.home }, timeoutMs: 120_000 });
          await waitUntil("a quarter of the file at pub", () => partialBytes(pub) >= f.size / 4, 60_000);
          const atCut = partialBytes(pub);
          cut(true);
          let first;
          try {
            first = await sending;
          } finally {
            expect(cut(false)).toBeGreaterThan(0);
          }
          expect(first.code).toBe(1);
          expect(first.json.hint).toContain("resumes");
          const again = await runPilot(args, { env: { PILOT_HOME: h1.home }, timeoutMs: 120_000 });
          expect({ code: again.code, err: again.json?.message }).toEqual({ code: 0, err: undefined });
          expect(again.json.data).toMatchObject({ name: "cut-long.bin", bytes: f.size, sha256: f.sha256 });
          expect(again.json.data.resumed_from).toBeGreaterThanOrEqual(atCut);
          expect(again.json.data.resumed_from).toBeLessThan(f.size);
          expect(createHash("sha256").update(readFileSync(join(pub.home, "received", "cut-long.bin"))).digest("hex")).toBe(f.sha256);
          expect(readdirSync(join(pub.home, "files", "partial"))).toEqual([]);
          notes.push(`  cut until the command gave up (--timeout 3s) at ${(atCut / 2 ** 20).toFixed(0)} MiB: re-run resumed_from ${(again.json.data.resumed_from / 2 ** 20).toFixed(1)} MiB of ${f.size / 2 ** 20}`);
        });
      },
      180_000,
    );
  });
}
