import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bytesToHex } from "../../src/crypto/bytes.ts";
import {
  generateIdentity,
  IdentityError,
  type IdentityErrorCode,
  identityFromSeed,
  loadIdentity,
  loadOrCreateIdentity,
  saveIdentity,
  verifySignature,
} from "../../src/crypto/identity.ts";
import { edPublicToX25519 } from "../../src/crypto/keys.ts";

const root = mkdtempSync(join(tmpdir(), "pilot-identity-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshPath = () => join(root, `case-${++counter}`, "identity.json");

function expectIdentityError(fn: () => unknown, code: IdentityErrorCode): IdentityError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(IdentityError);
    expect((error as IdentityError).code).toBe(code);
    return error as IdentityError;
  }
  throw new Error(`expected IdentityError ${code}`);
}

describe("identity keys", () => {
  test("sign and verify; wrong message, key or signature fail", () => {
    const id = generateIdentity();
    const message = new TextEncoder().encode("hello pilot");
    const signature = id.sign(message);
    expect(signature.length).toBe(64);
    expect(verifySignature(id.publicKey, message, signature)).toBe(true);
    expect(verifySignature(id.publicKey, new TextEncoder().encode("hello pilot!"), signature)).toBe(false);
    expect(verifySignature(generateIdentity().publicKey, message, signature)).toBe(false);
    const bad = signature.slice();
    bad[10]! ^= 1;
    expect(verifySignature(id.publicKey, message, bad)).toBe(false);
    expect(verifySignature(id.publicKey, message, signature.subarray(0, 63))).toBe(false);
    expect(verifySignature(new Uint8Array(5), message, signature)).toBe(false);
  });

  test("RFC 8032 test 1: seed -> public key and signature of the empty message", () => {
    const seed = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
    const id = identityFromSeed(seed);
    expect(bytesToHex(id.publicKey)).toBe("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    expect(bytesToHex(id.sign(new Uint8Array(0)))).toBe(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
  });

  test("the static X25519 key is the birational image of the Ed25519 key", () => {
    const id = generateIdentity();
    expect(bytesToHex(id.staticPublic)).toBe(bytesToHex(edPublicToX25519(id.publicKey)));
  });
});

describe("identity file", () => {
  test("missing file: loadOrCreate generates and saves with mode 0600 in a 0700 directory; restart reloads it", () => {
    const path = freshPath();
    expectIdentityError(() => loadIdentity(path), "not_found");
    const first = loadOrCreateIdentity(path);
    expect(first.created).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(path, "..")).mode & 0o777).toBe(0o700);
    const again = loadOrCreateIdentity(path);
    expect(again.created).toBe(false);
    expect(bytesToHex(again.identity.publicKey)).toBe(bytesToHex(first.identity.publicKey));
    const file = JSON.parse(readFileSync(path, "utf8"));
    expect(file.format).toBe("pilot-identity");
    expect(file.version).toBe(1);
    expect(file.algorithm).toBe("ed25519");
  });

  test("processes racing to create the identity all end up with the same one", async () => {
    const path = freshPath();
    const module = join(import.meta.dir, "../../src/crypto/identity.ts");
    const script = `import { loadOrCreateIdentity } from ${JSON.stringify(module)};
      const { identity } = loadOrCreateIdentity(${JSON.stringify(path)});
      console.log(Buffer.from(identity.publicKey).toString("hex"));`;
    const runs = Array.from({ length: 4 }, () =>
      Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" }),
    );
    const keys = await Promise.all(runs.map(async (p) => (await new Response(p.stdout).text()).trim()));
    expect(keys[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(keys).size).toBe(1);
    expect(bytesToHex(loadIdentity(path).publicKey)).toBe(keys[0]!);
    expect(readdirSync(join(path, "..")).filter((n) => n !== "identity.json")).toEqual([]);
  });

  test("save then load round-trips the key", () => {
    const path = freshPath();
    const id = generateIdentity();
    saveIdentity(path, id);
    const loaded = loadIdentity(path);
    expect(bytesToHex(loaded.publicKey)).toBe(bytesToHex(id.publicKey));
    const msg = new Uint8Array([1, 2, 3]);
    expect(verifySignature(id.publicKey, msg, loaded.sign(msg))).toBe(true);
  });

  test("corrupt JSON is an error, and the file is left alone", () => {
    const path = freshPath();
    saveIdentity(path, generateIdentity());
    writeFileSync(path, "{ not json", { mode: 0o600 });
    const error = expectIdentityError(() => loadOrCreateIdentity(path), "corrupt");
    expect(error.message).toContain("backup");
    expect(readFileSync(path, "utf8")).toBe("{ not json");
  });

  test("a key that is not 32 bytes of base64 is corrupt", () => {
    const path = freshPath();
    saveIdentity(path, generateIdentity());
    const file = JSON.parse(readFileSync(path, "utf8"));
    file.privateKey = "AAAA";
    writeFileSync(path, JSON.stringify(file), { mode: 0o600 });
    expectIdentityError(() => loadIdentity(path), "corrupt");
  });

  test("a public key that does not match the private key is an error", () => {
    const path = freshPath();
    saveIdentity(path, generateIdentity());
    const file = JSON.parse(readFileSync(path, "utf8"));
    file.publicKey = Buffer.from(generateIdentity().publicKey).toString("base64");
    writeFileSync(path, JSON.stringify(file), { mode: 0o600 });
    expectIdentityError(() => loadOrCreateIdentity(path), "key_mismatch");
  });

  test("an unknown version is an error that says to upgrade", () => {
    const path = freshPath();
    saveIdentity(path, generateIdentity());
    const file = JSON.parse(readFileSync(path, "utf8"));
    file.version = 2;
    writeFileSync(path, JSON.stringify(file), { mode: 0o600 });
    const error = expectIdentityError(() => loadIdentity(path), "unsupported_version");
    expect(error.message).toContain("upgrade");
  });

  test("a file readable by group or others is refused with the chmod to run", () => {
    for (const mode of [0o640, 0o604, 0o644, 0o660]) {
      const path = freshPath();
      saveIdentity(path, generateIdentity());
      chmodSync(path, mode);
      const error = expectIdentityError(() => loadOrCreateIdentity(path), "insecure_permissions");
      expect(error.message).toContain(`chmod 600 ${path}`);
    }
  });

  test.skipIf(process.getuid?.() !== 0)("a file owned by another uid is refused", () => {
    const path = freshPath();
    saveIdentity(path, generateIdentity());
    chownSync(path, 12345, 12345);
    const error = expectIdentityError(() => loadOrCreateIdentity(path), "wrong_owner");
    expect(error.message).toContain("12345");
  });
});
