/**
 * `pilot install [--prefix DIR]` and `pilot uninstall [--prefix DIR]`: put
 * `pilot` and a `pilotctl` link to it into `PREFIX/bin` (default
 * `/usr/local`, whose `bin` is on sudo's secure_path), so that
 * `sudo pilotctl gateway start ...` finds them.
 *
 * What is installed depends on what runs:
 * - the compiled binary (`bun run build` -> dist/pilot): a copy of it;
 * - Pilot from source (`bun src/cli/main.ts`): a small launcher script that
 *   runs this checkout with this Bun (absolute paths). It is honest about
 *   that: it stays tied to the checkout (run `install` again if it or Bun
 *   moves), and under sudo root runs whatever that checkout contains.
 *
 * Files are written next to their final name and renamed into place, so a
 * running `pilot` is never overwritten in place. A `pilot` or `pilotctl`
 * that is not Pilot's is never replaced or removed (without --force).
 */
import { chmodSync, closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, openSync, readlinkSync, readSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import type { CommandSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { textOption } from "../args.ts";

export const DEFAULT_PREFIX = "/usr/local";
/**
 * Written into every launcher, and present in the compiled binary (this
 * module is part of it): how install and uninstall recognise Pilot's files.
 */
export const INSTALL_MARKER = "pilot-install-marker-v1:8c0f3a7e";

export type InstallKind = "binary" | "launcher";

/** What runs now: the compiled executable, or Bun running src/cli/main.ts. */
export function currentRuntime(argv: readonly string[] = process.argv, execPath = process.execPath): { kind: InstallKind; executable: string; script?: string } {
  const script = argv[1] ?? "";
  if (script.startsWith("/$bunfs/") || script === execPath || script === "") return { kind: "binary", executable: execPath };
  return { kind: "launcher", executable: execPath, script: resolve(script) };
}

/** A POSIX shell word for `text` (single quotes). */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The launcher script for running `script` with `bun`. bash keeps the name it was called by (pilotctl). */
export function launcherScript(bun: string, script: string, bash: string | null): string {
  const run = `${shellQuote(bun)} ${shellQuote(script)} "$@"`;
  return [
    `#!${bash ?? "/bin/sh"}`,
    `# pilot launcher, written by \`pilot install\` (${INSTALL_MARKER}).`,
    `# It runs the Pilot checkout ${script} with the Bun at ${bun};`,
    "# if either moves, run `pilot install` again (or install the compiled binary: bun run build).",
    bash ? `exec -a "$(basename "$0")" ${run}` : `exec ${run}`,
    "",
  ].join("\n");
}

function findBash(): string | null {
  for (const p of ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"]) if (existsSync(p)) return p;
  return null;
}

/** Does `path` (or the file a symlink there points to) hold the marker: a launcher or a compiled pilot? */
export function isPilotFile(path: string): boolean {
  let st;
  try {
    st = statSync(path);
  } catch {
    return false;
  }
  if (!st.isFile()) return false;
  const marker = Buffer.from(INSTALL_MARKER);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return false;
  }
  try {
    const chunk = Buffer.alloc(1 << 20);
    let carry = Buffer.alloc(0);
    for (let read = 0; read < st.size; ) {
      const n = readSync(fd, chunk, 0, chunk.length, read);
      if (n <= 0) break;
      read += n;
      const window = Buffer.concat([carry, chunk.subarray(0, n)]);
      if (window.includes(marker)) return true;
      carry = window.subarray(Math.max(0, window.length - marker.length + 1));
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

/** `--prefix`: absolute, `~/` expanded; default /usr/local. */
function prefixOption(o: Record<string, any>): string {
  if (o.prefix === undefined) return DEFAULT_PREFIX;
  const text = textOption(o, "prefix") ?? "";
  if (text === "" || o.prefix === true) throw new CliError("usage", "--prefix needs a directory", "for example: --prefix /usr/local, or --prefix ~/.local");
  if (text.includes("\0")) throw new CliError("usage", "--prefix is not a valid path");
  const expanded = text === "~" ? homedir() : text.startsWith("~/") ? join(homedir(), text.slice(2)) : text;
  return isAbsolute(expanded) ? resolve(expanded) : resolve(process.cwd(), expanded);
}

/** How to run this very command as root, for hints. */
function sudoCommand(args: string): string {
  const rt = currentRuntime();
  return rt.kind === "binary" ? `sudo ${shellQuote(rt.executable)} ${args}` : `sudo ${shellQuote(rt.executable)} ${shellQuote(rt.script!)} ${args}`;
}

function permissionError(path: string, e: NodeJS.ErrnoException, verb: "install" | "uninstall"): CliError {
  return new CliError(
    "unauthorized",
    `cannot write to ${path}: ${e.code === "EROFS" ? "read-only file system" : "permission denied"}`,
    verb === "install"
      ? `install as root: ${sudoCommand("install")}; or for yourself only: pilot install --prefix ~/.local (sudo does not look there)`
      : `uninstall as root: ${sudoCommand("uninstall")}`,
  );
}

function fsError(path: string, e: unknown, verb: "install" | "uninstall"): CliError {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "EACCES" || err.code === "EPERM" || err.code === "EROFS") return permissionError(path, err, verb);
  if (err.code === "ENOTDIR" || err.code === "EEXIST") return new CliError("invalid_argument", `${path} is not a directory`, "pick another --prefix");
  return new CliError("internal", `cannot ${verb} in ${path}: ${err.message}`);
}

/** Is `path` a symlink to the `pilot` next to it? */
function isPilotLink(path: string, pilot: string): boolean {
  try {
    if (!lstatSync(path).isSymbolicLink()) return false;
    const target = readlinkSync(path);
    return resolve(dirname(path), target) === pilot;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function onPath(dir: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((p) => p !== "" && resolve(p) === dir);
}

export const installCommand: CommandSpec = {
  name: "install",
  description:
    "Install pilot and a pilotctl link into PREFIX/bin (default /usr/local/bin, on sudo's secure PATH: then `sudo pilotctl gateway start ...` works); from source it installs a launcher for this checkout",
  options: [
    { flags: "--prefix <dir>", description: `install into DIR/bin (default ${DEFAULT_PREFIX}; without root e.g. ~/.local)` },
    { flags: "--force", description: "replace a PREFIX/bin/pilot or pilotctl that is not Pilot's" },
  ],
  examples: [
    "pilot install                      # as root: sudo dist/pilot install (the compiled binary) -> /usr/local/bin/pilot, pilotctl",
    "pilot install                      # from a checkout: sudo $(command -v bun) src/cli/main.ts install (a launcher)",
    "pilot install --prefix ~/.local    # no root: ~/.local/bin (sudo does not look there)",
  ],
  returns: {
    prefix: "the prefix",
    bin_dir: "PREFIX/bin",
    pilot: "the installed pilot",
    pilotctl: "the pilotctl link (-> pilot)",
    kind: '"binary" (a copy of the compiled executable) or "launcher" (a script that runs this checkout with this Bun)',
    source: "what it runs: the executable copied, or the checkout's src/cli/main.ts",
    bun: "the Bun the launcher runs (launcher only)",
    replaced: "true if an earlier pilot was replaced",
    on_path: "true if PREFIX/bin is on this PATH",
  },
  errors: ["unauthorized", "invalid_argument", "already_exists", "usage", "internal"],
  run({ out }, _args, o) {
    const prefix = prefixOption(o);
    const bin = join(prefix, "bin");
    const pilot = join(bin, "pilot");
    const pilotctl = join(bin, "pilotctl");
    const force = o.force === true;
    const rt = currentRuntime();

    try {
      mkdirSync(bin, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw fsError(bin, e, "install");
    }
    if (!statSync(bin).isDirectory()) throw new CliError("invalid_argument", `${bin} is not a directory`, "pick another --prefix");
    const replaced = exists(pilot);
    if (replaced && !force && !isPilotFile(pilot)) {
      throw new CliError("already_exists", `${pilot} exists and is not Pilot's`, "move it away, or replace it with --force");
    }
    if (exists(pilotctl) && !force && !isPilotLink(pilotctl, pilot) && !isPilotFile(pilotctl)) {
      throw new CliError("already_exists", `${pilotctl} exists and is not a link to Pilot`, "move it away, or replace it with --force");
    }
    if (rt.kind === "binary" && resolve(rt.executable) === pilot) {
      throw new CliError("already_exists", `this pilot is ${pilot} already`, "to install another build, run that one's install");
    }

    // Next to the final name, then renamed over it: a running pilot is never written in place.
    const temp = join(bin, `.pilot.install-${process.pid}`);
    try {
      if (rt.kind === "binary") copyFileSync(rt.executable, temp);
      else writeFileSync(temp, launcherScript(rt.executable, rt.script!, findBash()), { mode: 0o755, flag: "wx" });
      chmodSync(temp, 0o755);
      renameSync(temp, pilot);
    } catch (e) {
      try {
        unlinkSync(temp);
      } catch {
        // not created
      }
      throw fsError(bin, e, "install");
    }
    const linkTemp = join(bin, `.pilotctl.install-${process.pid}`);
    try {
      symlinkSync("pilot", linkTemp);
      renameSync(linkTemp, pilotctl);
    } catch (e) {
      try {
        unlinkSync(linkTemp);
      } catch {
        // not created
      }
      throw fsError(bin, e, "install");
    }

    const data = {
      prefix,
      bin_dir: bin,
      pilot,
      pilotctl,
      kind: rt.kind,
      source: rt.kind === "binary" ? rt.executable : rt.script!,
      ...(rt.kind === "launcher" ? { bun: rt.executable } : {}),
      replaced,
      on_path: onPath(bin),
    };
    out.result(data, (d: any) => {
      const lines = [
        d.kind === "binary"
          ? `installed ${d.pilot} (a copy of ${d.source}) and ${d.pilotctl} -> pilot`
          : `installed ${d.pilot}, a launcher that runs this checkout (${d.source}) with ${d.bun}, and ${d.pilotctl} -> pilot`,
      ];
      if (!d.on_path) lines.push(`note: ${d.bin_dir} is not on your PATH`);
      return lines.join("\n");
    });
    if (rt.kind === "launcher") {
      out.progress("the launcher runs this checkout: run install again if it or Bun moves; under sudo, root runs whatever the checkout holds (on a shared machine install the compiled binary: bun run build, then sudo dist/pilot install)");
    }
  },
};

export const uninstallCommand: CommandSpec = {
  name: "uninstall",
  description: "Remove the pilot and pilotctl that `pilot install` put into PREFIX/bin (never a file that is not Pilot's)",
  options: [
    { flags: "--prefix <dir>", description: `the prefix given to install (default ${DEFAULT_PREFIX})` },
    { flags: "--force", description: "also remove a PREFIX/bin/pilot that does not look like Pilot's" },
  ],
  examples: ["pilot uninstall                    # as root: sudo pilot uninstall", "pilot uninstall --prefix ~/.local"],
  returns: { prefix: "the prefix", removed: "the files removed" },
  errors: ["not_found", "unauthorized", "invalid_argument", "usage", "internal"],
  run({ out }, _args, o) {
    const prefix = prefixOption(o);
    const bin = join(prefix, "bin");
    const pilot = join(bin, "pilot");
    const pilotctl = join(bin, "pilotctl");
    const force = o.force === true;
    const removable: string[] = [];
    if (exists(pilotctl)) {
      if (isPilotLink(pilotctl, pilot) || isPilotFile(pilotctl) || force) removable.push(pilotctl);
      else throw new CliError("invalid_argument", `${pilotctl} is not a link to Pilot; left alone`, "remove it yourself, or use --force");
    }
    if (exists(pilot)) {
      if (isPilotFile(pilot) || force) removable.push(pilot);
      else throw new CliError("invalid_argument", `${pilot} is not Pilot's; left alone`, "remove it yourself, or use --force");
    }
    if (removable.length === 0) throw new CliError("not_found", `no pilot or pilotctl in ${bin}`, prefix === DEFAULT_PREFIX ? "installed elsewhere? pass the same --prefix as to install" : undefined);
    for (const path of removable) {
      try {
        unlinkSync(path);
      } catch (e) {
        throw fsError(bin, e, "uninstall");
      }
    }
    out.result({ prefix, removed: removable }, (d: any) => `removed ${d.removed.join(" and ")}`);
  },
};
