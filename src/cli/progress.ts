/**
 * Live progress for long commands (`pilot send-file`, `pilot bench`): one line
 * on stderr, rewritten in place a few times a second, with the bytes done, the
 * total and percentage when known, the rate over the last seconds and an ETA;
 * erased when the command finishes, so the result stands alone.
 *
 * Shown only to a person: when stderr is a terminal (and TERM is not "dumb"),
 * and never with --json. A pipe, a file, a CI log or an agent reading the
 * output gets no progress at all. The first line appears after `delayMs`, so a
 * command that finishes at once prints none.
 *
 *   const p = startProgress({ enabled: progressWanted(out.json), label: "sending" });
 *   p.update(bytesDone, totalBytes);   // as often as you like; drawn on a timer
 *   p.finish();                        // erases the line, stops the timer
 *
 * With `bytes: false` it only shows the label and the time so far (a command
 * waiting for an acknowledgement or a reply), after about a second.
 */
import { bytes as size, duration } from "./format.ts";

export interface Progress {
  update(done: number, total?: number): void;
  /** Changes the word before the numbers (a new phase: "waiting for the reply"). */
  relabel(label: string): void;
  finish(): void;
}

export interface ProgressOptions {
  readonly enabled: boolean;
  /** A word before the numbers ("sending", "echoed"). */
  readonly label?: string;
  readonly total?: number;
  /** false: no bytes to count, only the label and the time so far (a command waiting for an answer). */
  readonly bytes?: boolean;
  /** Where the line goes (default: process.stderr). */
  readonly write?: (text: string) => void;
  /** Before the first line (default 300 ms) and between lines (default 200 ms). */
  readonly delayMs?: number;
  readonly intervalMs?: number;
  readonly clock?: () => number;
}

/** Progress is for a person at a terminal: stderr is a TTY, TERM is not dumb, and not --json. */
export function progressWanted(json: boolean, stream: { isTTY?: boolean } = process.stderr, env: Record<string, string | undefined> = process.env): boolean {
  return !json && stream.isTTY === true && env.TERM !== "dumb";
}

/** How far back the rate looks (ms). */
const RATE_WINDOW_MS = 3000;

/** The line's text (without the carriage return): `label  42%  8.4 MB of 20.0 MB  3.1 MB/s  ETA 4s`. Pure. */
export function formatProgress(p: { label?: string; done: number; total?: number; rate: number | null; elapsedMs: number; bytes?: boolean }): string {
  const parts: string[] = [];
  if (p.label) parts.push(p.label);
  if (p.bytes === false) return [...parts, duration(Math.floor(p.elapsedMs / 1000))].join("  ");
  const known = p.total !== undefined && p.total > 0;
  if (known) parts.push(`${String(Math.min(100, Math.floor((p.done / p.total!) * 100))).padStart(3)}%`, `${size(p.done)} of ${size(p.total!)}`);
  else parts.push(size(p.done));
  if (p.rate !== null) parts.push(`${size(Math.round(p.rate))}/s`);
  if (known && p.rate !== null && p.rate > 0 && p.done < p.total!) parts.push(`ETA ${duration(Math.ceil((p.total! - p.done) / p.rate))}`);
  else parts.push(duration(Math.floor(p.elapsedMs / 1000)));
  return parts.join("  ");
}

export function startProgress(options: ProgressOptions): Progress {
  if (!options.enabled) return { update() {}, relabel() {}, finish() {} };
  let label = options.label;
  const write = options.write ?? ((t: string) => void process.stderr.write(t));
  const clock = options.clock ?? (() => performance.now());
  const started = clock();
  let done = 0;
  let total = options.total;
  let shown = false;
  let updated = false;
  let samples: { at: number; done: number }[] = [{ at: started, done: 0 }];
  const draw = () => {
    const now = clock();
    samples.push({ at: now, done });
    while (samples.length > 2 && now - samples[1]!.at >= RATE_WINDOW_MS) samples.shift();
    const first = samples[0]!;
    const rate = now - first.at >= 250 ? ((done - first.done) * 1000) / (now - first.at) : null;
    // Nothing counted yet (a transfer still starting): the label and the time, no "0 B/s".
    const bytes = options.bytes === false || !updated ? false : undefined;
    write(`\r${formatProgress({ label, done, total, rate, elapsedMs: now - started, bytes })}\x1b[K`);
    shown = true;
  };
  let interval: ReturnType<typeof setInterval> | null = null;
  const first = setTimeout(() => {
    draw();
    interval = setInterval(draw, options.intervalMs ?? 200);
    interval.unref?.();
  }, options.delayMs ?? 300);
  first.unref?.();
  return {
    update(d, t) {
      // The rate counts from the first value (a resumed transfer starts part way).
      if (!updated) samples = [{ at: clock(), done: d }];
      updated = true;
      done = d;
      if (t !== undefined) total = t;
    },
    relabel(l) {
      label = l;
    },
    finish() {
      clearTimeout(first);
      if (interval) clearInterval(interval);
      if (shown) write("\r\x1b[K");
      shown = false;
    },
  };
}
