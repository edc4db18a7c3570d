/**
 * Loopback aliases: the local IPs the gateway listens on.
 *
 * - Linux: `ip addr add IP/32 dev lo` and `ip addr del IP/32 dev lo`. All of
 *   127.0.0.0/8 is already local on Linux, so a 127.x subnet needs no alias.
 * - macOS: `ifconfig lo0 alias IP` and `ifconfig lo0 -alias IP`; only
 *   127.0.0.1 is local there, so every other address needs an alias.
 *
 * Every alias the gateway adds is written to a ledger (`state.json` in the
 * gateway directory) *before* it is added, and dropped from it after it is
 * removed. A gateway that died without cleaning up (SIGKILL, a crash, power
 * loss) leaves its aliases in the ledger, and the next start removes them.
 * An alias that already existed before the gateway wanted it is used but
 * never recorded, so it is never removed.
 */
import { execFile } from "node:child_process";
import { existsSync, lchownSync, readFileSync, unlinkSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { writeFileAtomic } from "../util/atomic-file.ts";
import { GatewayError } from "./errors.ts";

export type Platform = "linux" | "darwin" | "other";

export function currentPlatform(): Platform {
  return process.platform === "linux" ? "linux" : process.platform === "darwin" ? "darwin" : "other";
}

/** Does `ip` (dotted quad) need a loopback alias before anything can listen on it? */
export function needsAlias(ip: string, platform: Platform = currentPlatform()): boolean {
  if (platform === "darwin") return ip !== "127.0.0.1";
  return !ip.startsWith("127.");
}

export function isRoot(): boolean {
  return typeof process.geteuid === "function" && process.geteuid() === 0;
}

/** Where an IPv4 address is configured on this machine (in this network namespace): interface names. */
export function interfacesWith(ip: string): string[] {
  const found: string[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === "IPv4" && a.address === ip)) found.push(name);
  }
  return found;
}

function isLoopbackInterface(name: string): boolean {
  return name === "lo" || name === "lo0";
}

/** Is `ip` on the loopback interface as a /32, the way the gateway adds its aliases? */
function isGatewayStyleAlias(ip: string): boolean {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (!isLoopbackInterface(name)) continue;
    if (addrs?.some((a) => a.family === "IPv4" && a.address === ip && a.netmask === "255.255.255.255")) return true;
  }
  return false;
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string; missing?: boolean }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (!error) return resolve({ code: 0, stderr: String(stderr) });
      const e = error as NodeJS.ErrnoException & { code?: unknown };
      if (e.code === "ENOENT") return resolve({ code: 127, stderr: `${cmd}: not found`, missing: true });
      resolve({ code: typeof e.code === "number" ? e.code : 1, stderr: String(stderr || e.message) });
    });
  });
}

/** The result of asking for an alias: `added` if this call created it (and so must remove it later). */
export type AliasOutcome = { added: boolean };

/** Adds a loopback alias. Resolves `{added:false}` if the address was already on the loopback interface. */
export async function addAlias(ip: string, platform: Platform = currentPlatform()): Promise<AliasOutcome> {
  const present = interfacesWith(ip);
  if (present.some(isLoopbackInterface)) return { added: false };
  if (present.length > 0) {
    throw new GatewayError("already_exists", `${ip} is an address of interface ${present.join(", ")}, not a free loopback address`, "choose another address or subnet: --subnet 10.77.0.0/16");
  }
  if (!isRoot()) throw notRootError(ip);
  let r: { code: number; stderr: string; missing?: boolean };
  if (platform === "linux") r = await run("ip", ["addr", "add", `${ip}/32`, "dev", "lo"]);
  else if (platform === "darwin") r = await run("ifconfig", ["lo0", "alias", ip]);
  else throw new GatewayError("internal", `loopback aliases are not supported on ${process.platform}`, "use a 127.x subnet, e.g. --subnet 127.77.0.0/16");
  if (r.code === 0) return { added: true };
  if (/File exists/i.test(r.stderr)) return { added: false };
  if (r.missing) throw new GatewayError("internal", `cannot add ${ip} to the loopback interface: ${r.stderr}`, platform === "linux" ? "install iproute2 (the ip command), or use a 127.x subnet" : undefined);
  if (/not permitted|permission/i.test(r.stderr)) throw notRootError(ip);
  throw new GatewayError("internal", `cannot add ${ip} to the loopback interface: ${r.stderr.trim()}`);
}

/** Removes a loopback alias; an alias that is already gone is not an error. */
export async function removeAlias(ip: string, platform: Platform = currentPlatform()): Promise<void> {
  let r: { code: number; stderr: string };
  if (platform === "linux") r = await run("ip", ["addr", "del", `${ip}/32`, "dev", "lo"]);
  else if (platform === "darwin") r = await run("ifconfig", ["lo0", "-alias", ip]);
  else return;
  if (r.code === 0 || /Cannot assign requested address|Can't assign|not found|No such/i.test(r.stderr)) return;
  throw new GatewayError("internal", `cannot remove ${ip} from the loopback interface: ${r.stderr.trim()}`);
}

export function notRootError(ip: string): GatewayError {
  return new GatewayError(
    "unauthorized",
    `adding the loopback address ${ip} needs root`,
    "run it with sudo (sudo pilot gateway start ...), or use a subnet inside 127.0.0.0/8, which needs no alias: --subnet 127.77.0.0/16",
  );
}

// ---- the ledger --------------------------------------------------------------

export interface LedgerState {
  /** The gateway process that owns the aliases. */
  pid: number;
  subnet: string;
  started_at: string;
  /** Aliases this gateway added (or is about to add) and must remove. */
  aliases: string[];
}

/** The ledger file of one gateway directory. All writes are atomic. */
export class AliasLedger {
  private state: LedgerState | null = null;

  constructor(
    readonly path: string,
    private readonly chownTo?: { uid: number; gid: number },
  ) {}

  /** What a previous gateway left behind, or null. */
  read(): LedgerState | null {
    try {
      const parsed = JSON.parse(readFileSync(this.path, "utf8"));
      if (!parsed || typeof parsed !== "object" || !Array.isArray(parsed.aliases)) return null;
      return {
        pid: Number(parsed.pid) || 0,
        subnet: String(parsed.subnet ?? ""),
        started_at: String(parsed.started_at ?? ""),
        aliases: parsed.aliases.filter((a: unknown): a is string => typeof a === "string"),
      };
    } catch {
      return null;
    }
  }

  /** Takes ownership of the ledger for this process. */
  open(pid: number, subnet: string): void {
    this.state = { pid, subnet, started_at: new Date().toISOString(), aliases: [] };
    this.write();
  }

  get aliases(): readonly string[] {
    return this.state?.aliases ?? [];
  }

  record(ip: string): void {
    if (!this.state || this.state.aliases.includes(ip)) return;
    this.state.aliases.push(ip);
    this.write();
  }

  forget(ip: string): void {
    if (!this.state) return;
    const i = this.state.aliases.indexOf(ip);
    if (i < 0) return;
    this.state.aliases.splice(i, 1);
    this.write();
  }

  /** Deletes the ledger (a clean stop: nothing is left to clean up). */
  remove(): void {
    this.state = null;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  private write(): void {
    if (!this.state) return;
    writeFileAtomic(this.path, JSON.stringify(this.state, null, 2) + "\n", 0o600);
    if (this.chownTo) chownQuietly(this.path, this.chownTo);
  }
}

/**
 * Gives `path` to `owner` (the user behind sudo). Never follows a symlink:
 * the directory belongs to that user, who could otherwise point one of our
 * names at a system file and have root hand it over.
 */
export function chownQuietly(path: string, owner: { uid: number; gid: number }): void {
  try {
    if (existsSync(path)) lchownSync(path, owner.uid, owner.gid);
  } catch {
    // Not root, or a filesystem without owners: the file stays as it is.
  }
}

/** Is `pid` a running process? A zombie (exited, not yet reaped by its parent) is not. */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return process.platform !== "linux";
  }
}

/**
 * Removes the aliases a dead gateway left in the ledger. Returns the
 * addresses removed and those that could not be (not root, or still in use
 * by a live gateway).
 */
export async function cleanupLeftovers(ledger: AliasLedger, platform: Platform = currentPlatform()): Promise<{ removed: string[]; failed: { ip: string; error: string }[]; ownerAlive: boolean }> {
  const previous = ledger.read();
  if (!previous) return { removed: [], failed: [], ownerAlive: false };
  if (previous.pid !== process.pid && processAlive(previous.pid) && isGatewayProcess(previous.pid)) {
    return { removed: [], failed: [], ownerAlive: true };
  }
  const removed: string[] = [];
  const failed: { ip: string; error: string }[] = [];
  for (const ip of previous.aliases) {
    // Only what the gateway could have added: a /32 on the loopback interface, never 127.0.0.1.
    if (!isGatewayStyleAlias(ip) || ip === "127.0.0.1") {
      removed.push(ip); // already gone (a reboot, or someone removed it)
      continue;
    }
    if (!isRoot()) {
      failed.push({ ip, error: "needs root" });
      continue;
    }
    try {
      await removeAlias(ip, platform);
      removed.push(ip);
    } catch (e) {
      failed.push({ ip, error: (e as Error).message });
    }
  }
  if (failed.length === 0) ledger.remove();
  return { removed, failed, ownerAlive: false };
}

/** Best effort: is `pid` a pilot gateway (and not an unrelated process that reused the pid)? */
export function isGatewayProcess(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes("gateway");
  } catch {
    // No /proc (macOS): trust the pid.
    return process.platform !== "linux";
  }
}
