/**
 * For CLI tests of long-running commands (recv, listen, connect as netcat):
 * a `pilot` process run as one cluster daemon's user, whose stdout can be
 * read line by line while it runs. Every process started here is killed by
 * pid in `killAll()` (call it from afterAll), or when the test process exits.
 */
import { ROOT, pilotCommand, type Cluster } from "../support/cluster.ts";

export interface LiveCommand {
  readonly proc: Bun.Subprocess<"pipe", "pipe", "pipe">;
  /** The next stdout line (rejects after `ms`). */
  nextLine(ms?: number): Promise<string>;
  /** Exit code, or null if it is still running after `ms`. */
  exited(ms?: number): Promise<number | null>;
  stderr(): Promise<string>;
  write(text: string): void;
  closeStdin(): void;
}

const live = new Set<Bun.Subprocess>();

export function startPilot(c: Cluster, name: string, args: string[]): LiveCommand {
  const [cmd, ...base] = pilotCommand();
  const proc = Bun.spawn([cmd!, ...base, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...c.daemon(name).env },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(proc);
  void proc.exited.then(() => live.delete(proc));
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let stderrText: Promise<string> | null = null;
  return {
    proc,
    async nextLine(ms = 10_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const nl = buffered.indexOf("\n");
        if (nl >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          return line;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no line from pilot ${args.join(" ")} within ${ms} ms (have: ${JSON.stringify(buffered)})`);
        const r = await Promise.race([reader.read(), Bun.sleep(left).then(() => null)]);
        if (r === null) continue;
        if (r.done) throw new Error(`pilot ${args.join(" ")} closed stdout (exit ${await proc.exited}): ${await this.stderr()}`);
        buffered += decoder.decode(r.value, { stream: true });
      }
    },
    async exited(ms = 10_000) {
      return Promise.race([proc.exited, Bun.sleep(ms).then(() => null)]);
    },
    stderr() {
      stderrText ??= new Response(proc.stderr).text();
      return stderrText;
    },
    write(text) {
      proc.stdin.write(text);
      proc.stdin.flush();
    },
    closeStdin() {
      proc.stdin.end();
    },
  };
}

export function killAll(): void {
  for (const p of live) p.kill("SIGKILL");
  live.clear();
}

process.on("exit", killAll);

/** Polls `check` until it returns a truthy value (or throws after `ms`). */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | null | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** Waits until daemon `name` has a stream listener on `port` (so a `recv` is ready). */
export function waitForListener(c: Cluster, name: string, port: number): Promise<true> {
  return waitFor(`a listener on port ${port} of ${name}`, async () => {
    const r = await c.pilot(name, ["info"]);
    return r.json?.data?.ports?.includes(port) === true;
  });
}
