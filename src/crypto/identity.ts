/**
 * A node's identity: one Ed25519 key pair. It signs (registry requests, trust
 * messages) and, through the birational map to X25519, is the static key of
 * the tunnel's Noise handshake, so one key names the node everywhere.
 *
 *   generateIdentity(random?): Identity
 *   identityFromSeed(seed32): Identity
 *   loadIdentity(path): Identity                    throws IdentityError
 *   saveIdentity(path, identity): void              atomic, mode 0600, directory 0700
 *   loadOrCreateIdentity(path): { identity, created }
 *   verifySignature(publicKey32, message, signature64): boolean
 *   identity.sign(message): Uint8Array (64 bytes)
 *
 * The file is our own JSON: { "format": "pilot-identity", "version": 1,
 * "algorithm": "ed25519", "publicKey": base64, "privateKey": base64 (the
 * 32-byte seed), "created": ISO time }. A file that is corrupt, whose public
 * key does not match its private key, that group or others can read, or that
 * another user owns is an IdentityError: it is never silently replaced,
 * because replacing it would change the node's identity.
 */
import { randomBytes, sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto";
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "../util/atomic-file.ts";
import { equalBytes } from "./bytes.ts";
import {
  KEY_SIZE,
  ed25519PrivateKey,
  ed25519PublicFromSeed,
  ed25519PublicKey,
  edSeedToX25519,
  x25519PublicFromPrivate,
} from "./keys.ts";

export const IDENTITY_FORMAT = "pilot-identity";
export const IDENTITY_VERSION = 1;
export const SIGNATURE_SIZE = 64;

export type IdentityErrorCode =
  | "not_found"
  | "unreadable"
  | "corrupt"
  | "unsupported_version"
  | "key_mismatch"
  | "insecure_permissions"
  | "wrong_owner";

export class IdentityError extends Error {
  constructor(
    readonly code: IdentityErrorCode,
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = "IdentityError";
  }
}

export interface Identity {
  /** Ed25519 public key, 32 bytes: what the registry publishes and peers pin. */
  readonly publicKey: Uint8Array;
  /** The node's static X25519 key pair for the tunnel handshake, derived from the Ed25519 key. */
  readonly staticPrivate: Uint8Array;
  readonly staticPublic: Uint8Array;
  sign(message: Uint8Array): Uint8Array;
  /** The 32-byte seed; only for saving the identity. */
  exportSeed(): Uint8Array;
}

export function identityFromSeed(seed: Uint8Array): Identity {
  if (seed.length !== KEY_SIZE) throw new RangeError(`an Ed25519 seed is ${KEY_SIZE} bytes`);
  const privateSeed = seed.slice();
  const signingKey = ed25519PrivateKey(privateSeed);
  const publicKey = ed25519PublicFromSeed(privateSeed);
  const staticPrivate = edSeedToX25519(privateSeed);
  const staticPublic = x25519PublicFromPrivate(staticPrivate);
  return {
    publicKey,
    staticPrivate,
    staticPublic,
    sign: (message) => new Uint8Array(nodeSign(null, message, signingKey)),
    exportSeed: () => privateSeed.slice(),
  };
}

export function generateIdentity(random: (n: number) => Uint8Array = (n) => new Uint8Array(randomBytes(n))): Identity {
  return identityFromSeed(random(KEY_SIZE));
}

/** Verifies an Ed25519 signature; malformed keys or signatures verify as false. */
export function verifySignature(publicKey: Uint8Array | KeyObject, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_SIZE) return false;
  try {
    const key = publicKey instanceof Uint8Array ? ed25519PublicKey(publicKey) : publicKey;
    return nodeVerify(null, message, key, signature);
  } catch {
    return false;
  }
}

interface IdentityFile {
  format: string;
  version: number;
  algorithm: string;
  publicKey: string;
  privateKey: string;
  created: string;
}

function serialize(identity: Identity, now: Date): string {
  const file: IdentityFile = {
    format: IDENTITY_FORMAT,
    version: IDENTITY_VERSION,
    algorithm: "ed25519",
    publicKey: Buffer.from(identity.publicKey).toString("base64"),
    privateKey: Buffer.from(identity.exportSeed()).toString("base64"),
    created: now.toISOString(),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** Writes (or deliberately replaces) the identity file: atomic, mode 0600, directory 0700. */
export function saveIdentity(path: string, identity: Identity, now: Date = new Date()): void {
  writeFileAtomic(path, serialize(identity, now), 0o600);
}

/**
 * Creates the identity file only if none exists: the new file is written and
 * fsynced under a temporary name, then hard-linked into place, which fails if
 * another process created the file first. Returns false in that case.
 */
function createIdentityFile(path: string, identity: Identity): boolean {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.new`);
  const bytes = Buffer.from(serialize(identity, new Date()));
  const fd = openSync(tmp, "wx", 0o600);
  try {
    let at = 0;
    while (at < bytes.length) at += writeSync(fd, bytes, at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    unlinkSync(tmp);
  }
  try {
    const dfd = openSync(dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the link itself is atomic.
  }
  return true;
}

function checkFileSafety(path: string): void {
  let stat;
  try {
    stat = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new IdentityError("not_found", path, `no identity file at ${path}: start the daemon once to create one`);
    }
    throw new IdentityError("unreadable", path, `cannot read identity file ${path}: ${(error as Error).message}`);
  }
  if (!stat.isFile()) throw new IdentityError("unreadable", path, `${path} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw new IdentityError(
      "wrong_owner",
      path,
      `identity file ${path} is owned by uid ${stat.uid}, not by you (uid ${uid}): ` +
        `run Pilot as its owner, or take ownership with "chown ${uid} ${path}" if the file is yours`,
    );
  }
  if ((stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(3, "0");
    throw new IdentityError(
      "insecure_permissions",
      path,
      `identity file ${path} has mode ${mode}, so other users can read your private key: ` +
        `run "chmod 600 ${path}" (and consider the key exposed if others had access)`,
    );
  }
}

function decodeKey(text: unknown, what: string, path: string): Uint8Array {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]{43}=$/.test(text)) {
    throw new IdentityError("corrupt", path, `identity file ${path}: "${what}" is not a base64-encoded 32-byte key`);
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}

const RESTORE_HINT = "restore it from a backup, or move it aside to create a new identity (this changes your node's identity)";

export function loadIdentity(path: string): Identity {
  checkFileSafety(path);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new IdentityError("unreadable", path, `cannot read identity file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new IdentityError("corrupt", path, `identity file ${path} is not valid JSON: ${RESTORE_HINT}`);
  }
  if (typeof parsed !== "object" || parsed === null || (parsed as IdentityFile).format !== IDENTITY_FORMAT) {
    throw new IdentityError("corrupt", path, `${path} is not a Pilot identity file: ${RESTORE_HINT}`);
  }
  const file = parsed as Partial<IdentityFile>;
  if (file.version !== IDENTITY_VERSION) {
    throw new IdentityError(
      "unsupported_version",
      path,
      `identity file ${path} has version ${String(file.version)}; this Pilot reads version ${IDENTITY_VERSION}: upgrade Pilot`,
    );
  }
  if (file.algorithm !== "ed25519") {
    throw new IdentityError("corrupt", path, `identity file ${path} names algorithm ${String(file.algorithm)}, not ed25519`);
  }
  const seed = decodeKey(file.privateKey, "privateKey", path);
  const publicKey = decodeKey(file.publicKey, "publicKey", path);
  const identity = identityFromSeed(seed);
  if (!equalBytes(identity.publicKey, publicKey)) {
    throw new IdentityError(
      "key_mismatch",
      path,
      `identity file ${path}: the public key does not belong to the private key (the file was edited or damaged): ${RESTORE_HINT}`,
    );
  }
  return identity;
}

/**
 * Loads the identity at `path`, or creates and saves a new one if there is no
 * file. Any other problem with an existing file is thrown, never papered over.
 */
export function loadOrCreateIdentity(path: string): { identity: Identity; created: boolean } {
  try {
    return { identity: loadIdentity(path), created: false };
  } catch (error) {
    if (!(error instanceof IdentityError) || error.code !== "not_found") throw error;
  }
  const identity = generateIdentity();
  // If another process created the file meanwhile, use theirs: one node, one identity.
  if (createIdentityFile(path, identity)) return { identity, created: true };
  return { identity: loadIdentity(path), created: false };
}
