/**
 * Running the examples for real: each is a child process with one daemon's
 * PILOT_HOME in its environment, exactly as a user would run it. Every
 * process started here is stopped by pid in `stopAll()` (called from
 * afterAll), and SIGKILLed on exit as a last resort.
 */
import type { Subprocess } from "bun";
import { join } from "node:path";
import { afterAll, beforeAll } from "bun:test";
import { ROOT, startCluster, type Cluster, type TestDaemon } from "../support/cluster.ts";

const running = new Set<Spawned>();

/** A child process whose stdout and stderr are collected as text. */
export class Spawned {
  stdout = "";
  stderr = "";
  readonly exited: Promise<number>;

  constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    running.add(this);
    const collect = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this[into] += decoder.decode(chunk, { stream: true });
    };
    const drained = Promise.all([collect(proc.stdout, "stdout"), collect(proc.stderr, "stderr")]);
    this.exited = (async () => {
      const code = await proc.exited;
      await drained;
      running.delete(this);
      return code;
    })();
  }

  get pid(): number {
    return this.proc.pid;
  }

  get output(): string {
    return this.stdout + this.stderr;
  }

  /** Resolves with the match once stdout+stderr matches; rejects if the process exits first or time runs out. */
  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const m = this.output.match(pattern);
      if (m) return m;
      if (exited) throw new Error(`process exited (code ${this.proc.exitCode}) before printing ${pattern}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${this.output}`);
      await Bun.sleep(20);
    }
  }

  /** The exit code, or a failure (after killing it) if it runs longer than `timeoutMs`. */
  async exitCode(timeoutMs = 20_000): Promise<number> {
    const timer = Bun.sleep(timeoutMs).then(() => "timeout" as const);
    const r = await Promise.race([this.exited, timer]);
    if (r === "timeout") {
      await this.stop("SIGKILL");
      throw new Error(`process did not exit within ${timeoutMs} ms:\n${this.output}`);
    }
    return r;
  }

  /** Sends `signal`; SIGKILL if it is still running 5 s later. Returns the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    const timer = Bun.sleep(5000).then(() => "timeout" as const);
    if ((await Promise.race([this.exited, timer])) === "timeout") this.proc.kill("SIGKILL");
    return this.exited;
  }
}

/** Spawns `argv` in the repository with extra environment variables. */
export function spawnIn(argv: string[], env: Record<string, string> = {}): Spawned {
  return new Spawned(
    Bun.spawn(argv, {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: "1", ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
}

/** Runs `bun examples/<script> ...args` as the user of `daemon` (its PILOT_HOME). */
export function runExample(script: string, daemon: TestDaemon | null, options: { args?: string[]; env?: Record<string, string> } = {}): Spawned {
  return spawnIn([process.execPath, join(ROOT, "examples", script), ...(options.args ?? [])], { ...(daemon?.env ?? {}), ...(options.env ?? {}) });
}

/** Stops every process this module started (in afterAll; also after a failed test). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

process.on("exit", () => {
  for (const p of running) p.proc.kill("SIGKILL");
});

/**
 * The two-agent cluster the HTTP examples' tests share, made in beforeAll and stopped (with every example
 * started) in afterAll: agent-a and agent-b trust each other; `stranger` trusts no one.
 */
export function useTwoAgents(): { readonly cluster: Cluster } {
  let c: Cluster | undefined;
  beforeAll(async () => {
    c = await startCluster({
      daemons: [
        { name: "a", hostname: "agent-a" },
        { name: "b", hostname: "agent-b" },
        { name: "stranger", hostname: "stranger" },
      ],
    });
    await c.trust("a", "b");
  });
  afterAll(async () => {
    await stopAll();
    await c?.stop();
  });
  return {
    get cluster() {
      if (!c) throw new Error("the cluster is made in beforeAll");
      return c;
    },
  };
}
