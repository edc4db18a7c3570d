/**
 * Running a gateway process (what `pilot gateway start --foreground` does,
 * and what the detached background gateway runs):
 *
 * 1. refuse if another gateway of this PILOT_HOME answers on the control socket;
 * 2. remove loopback aliases a crashed gateway left in the ledger;
 * 3. serve the control socket, map the initial targets;
 * 4. run until SIGTERM, SIGINT, SIGHUP or a `stop` request, then close every
 *    listener and connection and remove every alias it added.
 *
 * Files, in `$PILOT_HOME/gateway/` (0700): `gateway.sock` (control, 0600),
 * `state.json` (pid, subnet and the aliases it added: the ledger),
 * `gateway.log` (the background gateway's output). Run as root for a user's
 * PILOT_HOME (sudo), they belong to the owner of PILOT_HOME.
 */
import { existsSync, lstatSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import type { Server } from "node:net";
import { connect } from "../driver/index.ts";
import { pilotHomeSource, pilotPaths, sudoInvoker } from "../util/paths.ts";
import type { Logger } from "../util/log.ts";
import { AliasLedger, chownQuietly, cleanupLeftovers, isRoot, needsAlias, notRootError } from "./aliases.ts";
import { CONTROL_VERSION, controlSocketPath, LEDGER_FILE, probe, serveControl } from "./control.ts";
import { GatewayError } from "./errors.ts";
import { Gateway, type MappingInfo } from "./gateway.ts";
import { formatIPv4, type Subnet } from "./subnet.ts";

/** A control request's `ports`: the valid port numbers in it (1-65535). */
function portsParam(value: unknown): number[] {
  return Array.isArray(value) ? value.map(Number).filter((p) => Number.isInteger(p) && p >= 1 && p <= 65535) : [];
}

export interface GatewayDirs {
  /** PILOT_HOME, and where it came from (the variable, the user behind sudo, or ~/.pilot). */
  home: string;
  homeFrom: "PILOT_HOME" | "sudo" | "home";
  /** The user who ran sudo, when `homeFrom` is "sudo". */
  sudoUser?: string;
  dir: string;
  socket: string;
  ledger: string;
  /** Who should own the files (the owner of PILOT_HOME when we run as root for someone else). */
  owner?: { uid: number; gid: number };
}

export function gatewayDirs(env: NodeJS.ProcessEnv = process.env): GatewayDirs {
  const paths = pilotPaths(env);
  const source = pilotHomeSource(env);
  const dir = paths.gatewayDir;
  let owner: { uid: number; gid: number } | undefined;
  const invoker = source.from === "sudo" ? sudoInvoker(env) : undefined;
  if (invoker) {
    owner = { uid: invoker.uid, gid: invoker.gid };
  } else if (isRoot()) {
    try {
      const st = statSync(paths.home);
      if (st.uid !== 0) owner = { uid: st.uid, gid: st.gid };
    } catch {
      // no PILOT_HOME yet: root's own files
    }
  }
  return {
    home: paths.home,
    homeFrom: source.from,
    ...(source.user ? { sudoUser: source.user } : {}),
    dir,
    socket: controlSocketPath(dir),
    ledger: `${dir}/${LEDGER_FILE}`,
    ...(owner ? { owner } : {}),
  };
}

/** "~alice/.pilot (alice ran sudo)": which PILOT_HOME a command uses and why. */
export function describeHome(dirs: GatewayDirs): string {
  if (dirs.homeFrom === "sudo") return `${dirs.home} (the home of ${dirs.sudoUser}, who ran sudo)`;
  if (dirs.homeFrom === "PILOT_HOME") return `${dirs.home} (from PILOT_HOME)`;
  return dirs.home;
}

/**
 * Creates the gateway directory (0700) and checks it is a real directory
 * owned by us or by the owner of PILOT_HOME, not a symlink somewhere else:
 * as root under sudo we write into a directory that user controls. A
 * PILOT_HOME that root has to create for that user is given to them.
 */
export function prepareGatewayDir(dirs: GatewayDirs): void {
  if (dirs.owner && !existsSync(dirs.home)) {
    mkdirSync(dirs.home, { recursive: true, mode: 0o700 });
    chownQuietly(dirs.home, dirs.owner);
  }
  mkdirSync(dirs.dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dirs.dir);
  const me = typeof process.geteuid === "function" ? process.geteuid() : st.uid;
  if (!st.isDirectory() || (st.uid !== me && st.uid !== dirs.owner?.uid)) {
    throw new GatewayError("unauthorized", `${dirs.dir} is not a directory owned by you or by the owner of PILOT_HOME`, "remove it; the gateway creates it again");
  }
  if (dirs.owner) chownQuietly(dirs.dir, dirs.owner);
}

/** True if the first address of `subnet` needs a loopback alias here (so the gateway needs root). */
export function subnetNeedsRoot(subnet: Subnet): boolean {
  return needsAlias(formatIPv4(subnet.network + 1)) && !isRoot();
}

export interface RunningGateway {
  readonly gateway: Gateway;
  readonly pid: number;
  /** Resolves once the gateway has stopped and cleaned up. */
  readonly stopped: Promise<void>;
  /** The mappings made at start. */
  readonly initial: MappingInfo[];
  stop(reason: string): Promise<{ removed_aliases: string[] }>;
}

export interface RunOptions {
  subnet: Subnet;
  targets: string[];
  ports: number[];
  /** Wrap the initial mappings' connections in the secure channel. */
  secure?: boolean;
  log: Logger;
}

export async function runGateway(options: RunOptions): Promise<RunningGateway> {
  const { subnet, log } = options;
  if (subnetNeedsRoot(subnet)) throw notRootError(formatIPv4(subnet.network + 1));
  const dirs = gatewayDirs();
  prepareGatewayDir(dirs);

  const running = await probe(dirs.socket);
  if (running) throw new GatewayError("already_exists", `a gateway is already running (pid ${running.pid}, subnet ${running.subnet})`, "add mappings to it with: pilot gateway start|map <agent>, or stop it with: pilot gateway stop");

  const ledger = new AliasLedger(dirs.ledger, dirs.owner);
  const leftovers = await cleanupLeftovers(ledger);
  if (leftovers.ownerAlive) {
    const pid = ledger.read()?.pid;
    throw new GatewayError("already_exists", `a gateway (pid ${pid}) is running for this PILOT_HOME but does not answer on ${dirs.socket}`, `stop it: kill ${pid}; the next start removes what it left behind`);
  }
  if (leftovers.removed.length > 0) log.info("removed loopback aliases a previous gateway left behind", { aliases: leftovers.removed });
  if (leftovers.failed.length > 0) {
    throw new GatewayError("unauthorized", `loopback aliases left by a previous gateway could not be removed: ${leftovers.failed.map((f) => `${f.ip} (${f.error})`).join(", ")}`, "remove them as root: sudo pilot gateway stop");
  }

  const gateway = new Gateway({ subnet, connect: () => connect(), ledger, log });
  let control: Server | null = null;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<{ removed_aliases: string[] }> | null = null;

  const stop = (reason: string) => {
    stopping ??= (async () => {
      log.info("stopping", { reason });
      control?.close();
      try {
        unlinkSync(dirs.socket);
      } catch {
        // already gone
      }
      const r = await gateway.stop();
      if (r.failed_aliases.length > 0) log.error("some aliases could not be removed; the next start retries", { aliases: r.failed_aliases });
      log.info("stopped", { removed_aliases: r.removed_aliases });
      resolveStopped();
      return r;
    })();
    return stopping;
  };

  control = await serveControl(dirs.socket, async (op, params) => {
    switch (op) {
      case "status":
        return { pid: process.pid, subnet: subnet.text, control_version: CONTROL_VERSION, mappings: gateway.list() };
      case "map": {
        const target = typeof params.target === "string" ? params.target : "";
        if (!target) throw new GatewayError("invalid_argument", "map needs a target");
        const ports = portsParam(params.ports);
        const ip = typeof params.ip === "string" && params.ip !== "" ? params.ip : undefined;
        return { pid: process.pid, subnet: subnet.text, control_version: CONTROL_VERSION, ...(await gateway.map(target, ports, { ip, secure: params.secure === true })) };
      }
      case "unmap": {
        const target = typeof params.target === "string" ? params.target : "";
        if (!target) throw new GatewayError("invalid_argument", "unmap needs a local IP, hostname or address");
        if (params.ports !== undefined && !Array.isArray(params.ports)) throw new GatewayError("invalid_argument", "unmap's ports must be a list of port numbers");
        const ports = portsParam(params.ports);
        if (Array.isArray(params.ports) && ports.length !== params.ports.length) throw new GatewayError("invalid_argument", "unmap's ports must be numbers 1-65535");
        return gateway.unmap(target, ports.length > 0 ? ports : undefined);
      }
      case "stop": {
        const r = await stop("stop requested");
        return { pid: process.pid, ...r };
      }
      default:
        throw new GatewayError("invalid_argument", `unknown operation "${op}"`);
    }
  });
  if (dirs.owner) chownQuietly(dirs.socket, dirs.owner);
  // The control socket is ours, so the ledger is too.
  ledger.open(process.pid, subnet.text);

  const onSignal = (signal: NodeJS.Signals) => void stop(signal);
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("SIGHUP", onSignal);

  const initial: MappingInfo[] = [];
  try {
    for (const target of options.targets) initial.push((await gateway.map(target, options.ports, { secure: options.secure })).mapping);
  } catch (e) {
    await stop("an initial mapping failed");
    throw e;
  }
  log.info("gateway running", { pid: process.pid, subnet: subnet.text, socket: dirs.socket, mappings: initial.length });
  return { gateway, pid: process.pid, stopped, initial, stop };
}

