/**
 * A log file of bounded size: `pilot.log` grows to `maxBytes`, then its
 * contents move to `pilot.log.1` (and `.1` to `.2`, ... up to `keep` old
 * files; the oldest is dropped) and `pilot.log` starts again empty.
 *
 * Rotation copies and truncates in place instead of renaming: the file keeps
 * its inode, so every descriptor open on it stays valid. That matters for the
 * detached daemon, whose stdout and stderr are that same file (opened by
 * `pilot daemon start`, so that errors from before the logger exists, and a
 * crash's output, land in the log too). All writes are synchronous and the
 * daemon is one thread, so nothing is written between the copy and the
 * truncation: no line is lost.
 *
 * If someone else moves the file away (logrotate without copytruncate) or
 * deletes it, the next write after a second reopens the path.
 *
 * Writing never throws: a full disk or a vanished directory must not take the
 * daemon down. A rotation that fails still truncates (the bound holds) and
 * says so in the fresh file.
 */
import { closeSync, copyFileSync, fstatSync, ftruncateSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";

export interface RotationPolicy {
  /** Rotate before a write would take the file past this many bytes. */
  readonly maxBytes: number;
  /** Old files kept: path.1 (newest) .. path.keep (oldest). 0 keeps none. */
  readonly keep: number;
}

export const DEFAULT_ROTATION: RotationPolicy = { maxBytes: 10 * 1024 * 1024, keep: 3 };
/** Bounds for the config keys log_max_size and log_keep. */
export const ROTATION_LIMITS = { minBytes: 16 * 1024, maxBytes: 1024 ** 3, maxKeep: 20 } as const;

/** The rotated files of `path`, newest first: path.1, path.2, ... */
export function rotatedPaths(path: string, keep: number): string[] {
  return Array.from({ length: keep }, (_, i) => `${path}.${i + 1}`);
}

export class RotatingLogFile {
  private fd: number | null;
  private size: number;
  private lastPathCheck = 0;
  /** Rotations done since open (tests, diagnostics). */
  rotations = 0;

  private constructor(
    readonly path: string,
    readonly policy: RotationPolicy,
    fd: number,
    private readonly reopenCheckMs: number,
  ) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
  }

  /** Opens (creating, mode 0600) `path` for appending. Throws if it cannot be opened. */
  static open(path: string, policy: RotationPolicy = DEFAULT_ROTATION, options: { reopenCheckMs?: number } = {}): RotatingLogFile {
    return new RotatingLogFile(path, policy, openSync(path, "a", 0o600), options.reopenCheckMs ?? 1000);
  }

  /** Appends one line (a newline is added). */
  write(line: string): void {
    if (this.fd === null) return;
    this.reopenIfMoved();
    const bytes = Buffer.from(line + "\n");
    // Others may append to the same file (our own stderr, a crash's output): count what is really there.
    this.size = this.currentSize();
    if (this.size + bytes.length > this.policy.maxBytes && this.size > 0) this.rotate();
    try {
      let off = 0;
      while (off < bytes.length) off += writeSync(this.fd, bytes, off);
      this.size += bytes.length;
    } catch {
      // A closed or full log must never take the process down.
    }
  }

  /** Moves the current contents to path.1 (shifting older files) and empties the file. */
  rotate(): void {
    if (this.fd === null) return;
    let failure: string | null = null;
    try {
      const old = rotatedPaths(this.path, this.policy.keep);
      if (old.length > 0) {
        rmSync(old[old.length - 1]!, { force: true });
        for (let i = old.length - 1; i > 0; i--) {
          try {
            renameSync(old[i - 1]!, old[i]!);
          } catch (e: any) {
            if (e?.code !== "ENOENT") throw e;
          }
        }
        // Copy to a temporary name first: path.1 is either the old copy or the whole new one.
        const tmp = `${old[0]}.tmp`;
        copyFileSync(this.path, tmp);
        renameSync(tmp, old[0]!);
      }
    } catch (e) {
      failure = (e as Error).message;
    }
    try {
      ftruncateSync(this.fd, 0);
      this.size = 0;
      this.rotations++;
    } catch {
      return; // cannot even truncate: keep appending rather than lose lines
    }
    if (failure) this.write(`${new Date().toISOString()} WARN  log: rotation failed, older lines were dropped: ${failure}`);
  }

  close(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = null;
  }

  /** The path names another file now (or none): write to the path again. */
  private reopenIfMoved(): void {
    const now = Date.now();
    if (now - this.lastPathCheck < this.reopenCheckMs) return;
    this.lastPathCheck = now;
    let same = false;
    try {
      const a = fstatSync(this.fd!);
      const b = statSync(this.path);
      same = a.dev === b.dev && a.ino === b.ino;
    } catch {
      // the path is gone: reopen creates it
    }
    if (same) return;
    try {
      const fd = openSync(this.path, "a", 0o600);
      closeSync(this.fd!);
      this.fd = fd;
    } catch {
      // keep the old descriptor: lines still go somewhere
    }
  }

  private currentSize(): number {
    try {
      return fstatSync(this.fd!).size;
    } catch {
      return this.size;
    }
  }
}
