import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { ReplayCache, TokenBuckets } from "../../src/registry/limits.ts";
import { checkEndpoint, checkHostname, checkReason, checkSearchQuery, checkTags } from "../../src/registry/rules.ts";
import { verifyEd25519 } from "../../src/registry/signer.ts";
import { RegistryStore, SCHEMA_VERSION } from "../../src/registry/store.ts";
import {
  canonicalJson,
  encodeFrame,
  FrameReader,
  fromBase64,
  MAX_FRAME,
  requestSigningBytes,
  responseSigningBytes,
  responseSigningBytesOf,
  signedFrame,
  toBase64,
} from "../../src/registry/wire.ts";
import { generateIdentity } from "../../src/crypto/identity.ts";
import { seededRandom } from "../support/fuzz.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "pilot-store-test-"));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("canonical JSON", () => {
  test("sorts keys at every depth, no whitespace, skips undefined", () => {
    expect(canonicalJson({ b: 1, a: [{ d: true, c: null }], e: "x", u: undefined })).toBe('{"a":[{"c":null,"d":true}],"b":1,"e":"x"}');
  });
  test("refuses values two implementations could write differently", () => {
    for (const v of [1.5, NaN, Infinity, 2 ** 60, new Date(), () => 1, 10n]) expect(() => canonicalJson(v)).toThrow(TypeError);
  });
  test("signing bytes differ by role, registry key and nonce", () => {
    const msg = { type: "lookup", id: 1 };
    const k1 = new Uint8Array(32).fill(1);
    const k2 = new Uint8Array(32).fill(2);
    expect(Buffer.compare(requestSigningBytes(msg, k1), requestSigningBytes(msg, k2))).not.toBe(0);
    expect(Buffer.compare(requestSigningBytes({ ...msg, sig: "x" }, k1), requestSigningBytes(msg, k1))).toBe(0);
    expect(Buffer.compare(responseSigningBytes(msg, k1.subarray(0, 16)), requestSigningBytes(msg, k1))).not.toBe(0);
  });
});

describe("frames", () => {
  test("any split of a stream of frames yields the same messages", () => {
    const messages = Array.from({ length: 20 }, (_, i) => ({ i, text: "x".repeat(i * 37) }));
    const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));
    const rand = seededRandom(9);
    for (let round = 0; round < 50; round++) {
      const reader = new FrameReader();
      const out: unknown[] = [];
      for (let at = 0; at < stream.length; ) {
        const n = 1 + Math.floor(rand() * 64);
        for (const f of reader.push(stream.subarray(at, at + n))) out.push(f.kind === "message" ? f.value : f);
        at += n;
      }
      expect(out).toEqual(messages);
    }
  });
  test("a length above the limit is fatal at once and nothing after it is read", () => {
    const reader = new FrameReader();
    const header = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
    expect(reader.push(header)).toEqual([{ kind: "fatal", reason: expect.stringContaining("outside") }]);
    expect(reader.push(encodeFrame({ a: 1 }))).toEqual([]);
    expect(() => encodeFrame({ big: "x".repeat(MAX_FRAME) })).toThrow(RangeError);
  });
  test("base64 must be canonical and of the exact size", () => {
    const b = new Uint8Array(16).fill(7);
    expect(fromBase64(toBase64(b), 16)).toEqual(b);
    expect(fromBase64(toBase64(b), 15)).toBeUndefined();
    expect(fromBase64(toBase64(b).replace("=", ""), 16)).toBeUndefined();
    expect(fromBase64("!".repeat(24), 16)).toBeUndefined();
    expect(fromBase64(42, 16)).toBeUndefined();
  });
});

describe("signed frames", () => {
  test("a response serialised once reads back as the message with its sig, which verifies as responseSigningBytes", () => {
    const id = generateIdentity();
    const nonce = new Uint8Array(16).fill(7);
    const response = { type: "response", id: 3, ok: true, node_id: 9, tags: ["a", "b"], hostname: "h\u00e9", error: undefined };
    const canonical = canonicalJson(response);
    const sig = toBase64(id.sign(responseSigningBytesOf(canonical, nonce)));
    expect(responseSigningBytesOf(canonical, nonce)).toEqual(responseSigningBytes(response, nonce));
    const [frame] = new FrameReader().push(signedFrame(canonical, sig));
    expect(frame).toEqual({ kind: "message", value: { type: "response", id: 3, ok: true, node_id: 9, tags: ["a", "b"], hostname: "h\u00e9", sig } });
    const value = (frame as { value: Record<string, unknown> }).value;
    expect(verifyEd25519(id.publicKey, responseSigningBytes(value, nonce), fromBase64(value.sig, 64)!)).toBe(true);
    expect(new FrameReader().push(signedFrame("{}", sig))).toEqual([{ kind: "message", value: { sig } }]);
    expect(() => signedFrame(canonicalJson({ big: "x".repeat(MAX_FRAME) }), sig)).toThrow(RangeError);
    expect(() => signedFrame("[1]", sig)).toThrow(TypeError);
  });
});

describe("rules", () => {
  test("hostnames", () => {
    expect(checkHostname("a").ok).toBe(true);
    expect(checkHostname("a-b-9").ok).toBe(true);
    for (const bad of ["", "A", "-a", "a-", "a_b", "a".repeat(64), "localhost", "123", 5]) expect(checkHostname(bad).ok).toBe(false);
  });
  test("tags", () => {
    expect(checkTags(["#a", "a", "b-c"])).toEqual({ ok: true, value: ["a", "b-c"] });
    expect(checkTags(["#"]).ok).toBe(false);
    expect(checkTags("a").ok).toBe(false);
  });
  test("endpoints are IP literals with ports, written canonically", () => {
    expect(checkEndpoint("1.2.3.4:5")).toEqual({ ok: true, value: "1.2.3.4:5" });
    expect(checkEndpoint("[::FFFF:1.2.3.4]:5")).toEqual({ ok: true, value: "1.2.3.4:5" });
    expect(checkEndpoint("[2001:DB8:0:0::1]:5")).toEqual({ ok: true, value: "[2001:db8::1]:5" });
    for (const bad of ["1.2.3.4", "host:1", "1.2.3.4:0", "1.2.3.4:65536", "[fe80::1%eth0]:1", "::1:5", "[1.2.3.4]:5"]) expect(checkEndpoint(bad).ok).toBe(false);
  });
  test("reasons and queries", () => {
    expect(checkReason("x".repeat(500)).ok).toBe(true);
    expect(checkReason("\u{1F600}".repeat(500)).ok).toBe(true);
    expect(checkReason("x".repeat(501)).ok).toBe(false);
    expect(checkReason("a\nb").ok).toBe(false);
    expect(checkReason("\ud800").ok).toBe(false);
    expect(checkSearchQuery("#Web")).toEqual({ ok: true, value: "web" });
    expect(checkSearchQuery("a b").ok).toBe(false);
  });
});

describe("limits", () => {
  test("a token bucket allows its burst, then its rate", () => {
    const b = new TokenBuckets({ rate: 2, burst: 3 });
    expect([b.take("k", 0), b.take("k", 0), b.take("k", 0), b.take("k", 0)]).toEqual([true, true, true, false]);
    expect(b.take("k", 499)).toBe(false);
    expect(b.take("k", 500)).toBe(true);
    expect(b.take("other", 500)).toBe(true);
  });
  test("the replay cache remembers a nonce for its window, then forgets it", () => {
    const c = new ReplayCache(60_000);
    expect(c.remember("n", 1000, 1000)).toBe("fresh");
    expect(c.remember("n", 1000, 50_000)).toBe("replayed");
    expect(c.remember("n", 100_000, 100_000)).toBe("fresh");
    for (let i = 0; i < 10; i++) c.remember(`x${i}`, 0, 0);
    c.remember("late", 200_000, 200_000);
    expect(c.size).toBeLessThanOrEqual(2);
  });
  test("signature verification refuses bad sizes and keys", () => {
    const id = generateIdentity();
    const m = new Uint8Array([1, 2, 3]);
    const sig = id.sign(m);
    expect(verifyEd25519(id.publicKey, m, sig)).toBe(true);
    expect(verifyEd25519(id.publicKey, new Uint8Array([1, 2]), sig)).toBe(false);
    expect(verifyEd25519(id.publicKey.subarray(0, 31), m, sig)).toBe(false);
    expect(verifyEd25519(new Uint8Array(32).fill(0xff), m, sig)).toBe(false);
    expect(verifyEd25519(id.publicKey, m, sig.subarray(0, 63))).toBe(false);
  });
});

describe("store", () => {
  test("is created at the current schema version and refuses a newer one", () => {
    const path = join(tempDir(), "s.db");
    const s = RegistryStore.open(path);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    const n = s.createNode("key", 1, null);
    expect(n.id).toBe(4);
    s.close();
    const db = new Database(path);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => RegistryStore.open(path)).toThrow("newer");
  });
  test("a schema 1 store is migrated to 2 in place: nodes kept, replay nonces stored", () => {
    const path = join(tempDir(), "v1.db");
    const db = new Database(path);
    db.exec(`CREATE TABLE nodes (id INTEGER PRIMARY KEY, public_key TEXT NOT NULL UNIQUE, hostname TEXT UNIQUE, public INTEGER NOT NULL DEFAULT 0,
      tags TEXT NOT NULL DEFAULT '[]', endpoints TEXT NOT NULL DEFAULT '[]', observed_ip TEXT, registered_at INTEGER NOT NULL,
      last_seen INTEGER NOT NULL, active INTEGER NOT NULL DEFAULT 1);
      CREATE TABLE node_tags (tag TEXT NOT NULL, node_id INTEGER NOT NULL, PRIMARY KEY (tag, node_id)) WITHOUT ROWID;
      CREATE TABLE trust (a INTEGER NOT NULL, b INTEGER NOT NULL, since INTEGER NOT NULL, PRIMARY KEY (a, b), CHECK (a < b)) WITHOUT ROWID;
      CREATE TABLE trust_requests (from_id INTEGER NOT NULL, to_id INTEGER NOT NULL, reason TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (from_id, to_id)) WITHOUT ROWID;
      INSERT INTO nodes (id, public_key, hostname, registered_at, last_seen) VALUES (4, 'k', 'old-name', 1, 1);
      PRAGMA user_version = 1;`);
    db.close();
    const s = RegistryStore.open(path);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(s.nodeById(4)?.hostname).toBe("old-name");
    expect(s.claimNonce("n1", 100)).toBe(true);
    expect(s.claimNonce("n1", 100)).toBe(false);
    expect(s.pruneNonces(101)).toBe(1);
    expect(s.claimNonce("n1", 200)).toBe(true);
    expect(s.reap(2)).toBe(1);
    expect(s.nodeById(4)?.hostname).toBeNull();
    s.close();
  });
  test("a schema 3 store is migrated to 4 in place: existing hostnames enter the trigram index, which follows later changes", () => {
    const path = join(tempDir(), "v3.db");
    const s3 = RegistryStore.open(path);
    for (const [i, name] of ["alpha-box", "beta-box", "gamma"].entries()) {
      const n = s3.createNode(`k${i}`, 1, null);
      s3.setHostname(n.id, name);
      s3.setPublic(n.id, true);
    }
    s3.close();
    // Back to schema 3: no index, no triggers.
    const db = new Database(path);
    db.exec(`DROP TRIGGER nodes_hostname_trgm_insert; DROP TRIGGER nodes_hostname_trgm_update; DROP TRIGGER nodes_hostname_trgm_delete;
      DROP TABLE nodes_hostname_trgm; PRAGMA user_version = 3;`);
    db.close();
    const s = RegistryStore.open(path);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(s.search(4, "box", 50).map((n) => n.hostname)).toEqual(["alpha-box", "beta-box"]);
    s.setHostname(6, "gamma-box");
    expect(s.search(4, "box", 50).map((n) => n.hostname)).toEqual(["alpha-box", "beta-box", "gamma-box"]);
    // The search reads the index: a name it does not hold is not found (the scan would find it).
    s.exec("DELETE FROM nodes_hostname_trgm WHERE rowid = 4");
    expect(s.search(4, "box", 50).map((n) => n.hostname)).toEqual(["beta-box", "gamma-box"]);
    s.close();
  });
  test("a failed transaction leaves nothing behind", () => {
    const s = RegistryStore.open(join(tempDir(), "t.db"));
    expect(() =>
      s.transaction(() => {
        s.createNode("k1", 1, null);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(s.nodeByKey("k1")).toBeUndefined();
    expect(s.counts().nodes).toBe(0);
    s.close();
  });
});
