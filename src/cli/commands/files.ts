/**
 * Files from the command line (port 1001; docs/SERVICES.md):
 *
 *   pilot send-file TARGET PATH [--name NAME] [--timeout D]
 *   pilot received [--clear]
 *
 * The local daemon reads the file and streams it; the target writes it under
 * its PILOT_HOME/received/ and answers only once it is fsynced and its SHA-256
 * matched. Interrupted (a daemon killed, a network cut): the same command
 * again resumes from what the target stored.
 */
import { resolve } from "node:path";
import type { CommandSpec } from "../command.ts";
import { usageError } from "../errors.ts";
import { withDaemon } from "../daemon-client.ts";
import { badValue, durationOption, optionText, targetArg } from "../args.ts";
import { ago, bytes as size, table } from "../format.ts";
import { progressWanted, startProgress } from "../progress.ts";
import type { FileSendResult, ReceivedClearResult, ReceivedListResult } from "../../protocol/exchange-calls.ts";

export const sendFileCommand: CommandSpec = {
  name: "send-file",
  args: "<target> <path>",
  description: "Send a file to a node (streamed, SHA-256 verified, resumable: the same command again continues an interrupted transfer)",
  options: [
    { flags: "--name <name>", description: "the name to offer (default: the file's own); the target sanitises it and adds a suffix if taken" },
    { flags: "--timeout <duration>", description: "give up after this long without progress (default 30s); until then cuts are resumed automatically" },
  ],
  examples: ["pilot send-file agent-b ./report.pdf", "pilot send-file agent-b data.tar.gz --name dataset-v2.tar.gz --timeout 2m"],
  returns: {
    target: "the target's address",
    name: "the name the target stored it under (in its PILOT_HOME/received/)",
    bytes: "the file's size",
    sha256: "the file's SHA-256 (hex), as both sides computed it",
    resumed_from: "bytes the target already held from an earlier try (0 for a fresh transfer)",
    seconds: "how long it took",
  },
  errors: ["usage", "invalid_argument", "not_found", "quota_exceeded", "too_large", "not_trusted", "connection_refused", "unreachable", "timeout", "not_running"],
  async run({ out }, [targetText, pathText], o) {
    const target = targetArg(targetText);
    if (pathText === undefined || pathText === "") throw usageError("a file to send is required", "for example: pilot send-file agent-b ./report.pdf");
    const path = resolve(pathText);
    const name = o.name !== undefined ? optionText(o.name, "--name") : undefined;
    if (name !== undefined && name.trim() === "") throw badValue("--name must not be empty", "for example: --name report.pdf");
    const timeoutMs = durationOption(o.timeout, "--timeout", { maxMs: 24 * 3_600_000 });
    const showProgress = progressWanted(out.json);
    const progress = startProgress({ enabled: showProgress, label: "sending" });
    let r: FileSendResult;
    try {
      r = await withDaemon((d) =>
        d.sendFile(target, path, {
          ...(name !== undefined ? { name } : {}),
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
          // Progress polls the daemon: only when someone watches.
          ...(showProgress ? { onProgress: (p: { bytes: number; size: number }) => progress.update(p.bytes, p.size) } : {}),
        }),
      );
    } finally {
      progress.finish();
    }
    out.result(r, (x: FileSendResult) => {
      const rate = x.seconds > 0 ? `, ${size(Math.round((x.bytes - x.resumed_from) / x.seconds))}/s` : "";
      const resumed = x.resumed_from > 0 ? ` (resumed: ${size(x.resumed_from)} were already there)` : "";
      return `sent ${pathText} to ${x.target} as "${x.name}": ${size(x.bytes)} in ${x.seconds.toFixed(1)} s${rate}${resumed}\n  sha256 ${x.sha256}`;
    });
  },
};

export const receivedCommand: CommandSpec = {
  name: "received",
  description: "List the files peers sent this node (under PILOT_HOME/received/); --clear removes them",
  options: [{ flags: "--clear", description: "delete every received file (frees the senders' quotas)" }],
  examples: ["pilot received", "pilot received --json", "pilot received --clear"],
  returns: {
    dir: "where received files are written",
    files: "[{name, path, bytes, sha256, from, received_at}], newest first",
    total: "number of files",
    bytes: "their size together",
    partial: "interrupted transfers kept for resuming",
    cleared: "with --clear: files deleted",
  },
  errors: ["not_running"],
  async run({ out }, _args, o) {
    if (o.clear) {
      const r: ReceivedClearResult = await withDaemon((d) => d.clearReceived());
      out.result(r, (x: ReceivedClearResult) => `deleted ${x.cleared} received file${x.cleared === 1 ? "" : "s"} (${size(x.bytes)})`);
      return;
    }
    const r: ReceivedListResult = await withDaemon((d) => d.received());
    out.result(r, (x: ReceivedListResult) => {
      const partial = x.partial > 0 ? `\n${x.partial} interrupted transfer${x.partial === 1 ? "" : "s"} kept for resuming` : "";
      if (x.files.length === 0) return `no files received (they arrive in ${x.dir})${partial}`;
      const rows = x.files.map((f) => [f.name, size(f.bytes), f.from, ago(f.received_at), f.sha256.slice(0, 16)]);
      return `${table(["NAME", "SIZE", "FROM", "RECEIVED", "SHA256"], rows)}\n${x.total} file${x.total === 1 ? "" : "s"}, ${size(x.bytes)} in ${x.dir}${partial}`;
    });
  },
};
