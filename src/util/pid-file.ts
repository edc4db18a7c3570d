/**
 * A daemon's pid file, held open for the daemon's whole life. The open
 * descriptor is the proof of ownership: a pid file alone proves nothing (the
 * daemon may have died and its pid been reused, or the file may name another
 * home's daemon), but only the process that wrote this home's file holds that
 * very file (same device and inode) open. Linux /proc only; elsewhere nothing is
 * proven and a caller must not trust the pid with a signal.
 */
import { closeSync, openSync, readdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { writeFileAtomic } from "./atomic-file.ts";

/** Writes `pid` into `path` and keeps it open; the returned function closes it and removes the file if it is still ours. */
export function holdPidFile(path: string, pid = process.pid): () => void {
  writeFileAtomic(path, `${pid}\n`, 0o644);
  let fd: number | null = openSync(path, "r");
  return () => {
    if (fd !== null) closeSync(fd);
    fd = null;
    try {
      if (readFileSync(path, "utf8").trim() === String(pid)) unlinkSync(path);
    } catch {
      // already gone
    }
  };
}

/** True if process `pid` holds the file at `path` open (checked by device and inode through /proc/<pid>/fd). */
export function processHoldsFile(pid: number, path: string): boolean {
  let want;
  try {
    want = statSync(path);
  } catch {
    return false;
  }
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // gone, not ours to look at, or no /proc
  }
  for (const fd of fds) {
    try {
      const s = statSync(`/proc/${pid}/fd/${fd}`);
      if (s.dev === want.dev && s.ino === want.ino) return true;
    } catch {
      // closed meanwhile, or not a file
    }
  }
  return false;
}
