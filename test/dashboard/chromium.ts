/**
 * Headless Chromium (Debian's `chromium`) driven over the DevTools protocol,
 * for tests: a throwaway profile, remote debugging on 127.0.0.1 at a port the
 * browser picks, and every process it starts in a process group of its own,
 * which `close()` ends (only that group: nothing else is signalled).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

/** Debian's chromium, or PILOT_TEST_CHROMIUM (a path; "none" acts as if it were not installed). */
export function chromiumPath(): string | null {
  if (process.env.PILOT_TEST_CHROMIUM === "none") return null;
  for (const p of [process.env.PILOT_TEST_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"]) if (p && existsSync(p)) return p;
  return null;
}

export interface Browser {
  /** Navigates the page and waits for its load event. */
  navigate(url: string): Promise<void>;
  /** Evaluates `expression` in the page; its value (JSON-serialisable). */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** Polls `expression` until it is truthy; its value. */
  waitFor<T = unknown>(expression: string, timeoutMs?: number): Promise<T>;
  /** A PNG of the viewport. */
  screenshot(): Promise<Uint8Array>;
  close(): Promise<void>;
}

export async function launchChromium(options: { width?: number; height?: number; timeoutMs?: number } = {}): Promise<Browser> {
  const bin = chromiumPath();
  if (!bin) throw new Error("chromium is not installed (apt-get install chromium)");
  const profile = mkdtempSync("/tmp/pilot-chromium-");
  const child: ChildProcess = spawn(
    bin,
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--disable-sync",
      "--disable-component-update",
      "--hide-scrollbars",
      `--window-size=${options.width ?? 1400},${options.height ?? 1100}`,
      `--user-data-dir=${profile}`,
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      "about:blank",
    ],
    { detached: true, stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  const group = child.pid!;
  let closed = false;
  const kill = () => {
    try {
      process.kill(-group, "SIGKILL");
    } catch {
      // gone already
    }
  };
  const cleanup = async () => {
    if (closed) return;
    closed = true;
    kill();
    // Once it is gone its group id may be reused: never signal it again.
    process.off("exit", kill);
    rmSync(profile, { recursive: true, force: true });
  };
  // A test run that dies before close() still takes its browser with it.
  process.once("exit", kill);
  try {
    const deadline = Date.now() + (options.timeoutMs ?? 20_000);
    const portFile = join(profile, "DevToolsActivePort");
    while (!existsSync(portFile) || readFileSync(portFile, "utf8").split("\n").length < 2) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`chromium did not start: ${stderr}`);
      await Bun.sleep(50);
    }
    const port = Number(readFileSync(portFile, "utf8").split("\n")[0]);
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { type: string; webSocketDebuggerUrl: string }[];
    const page = targets.find((t) => t.type === "page");
    if (!page) throw new Error("chromium has no page target");
    const cdp = await Cdp.connect(page.webSocketDebuggerUrl);
    await cdp.send("Page.enable");
    await cdp.send("Runtime.enable");
    const browser: Browser = {
      async navigate(url) {
        const loaded = cdp.once("Page.loadEventFired", 15_000);
        await cdp.send("Page.navigate", { url });
        await loaded;
      },
      async evaluate<T>(expression: string) {
        const r = (await cdp.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true })) as any;
        if (r.exceptionDetails) throw new Error(`page threw: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value as T;
      },
      async waitFor<T>(expression: string, timeoutMs = 15_000) {
        const until = Date.now() + timeoutMs;
        for (;;) {
          const v = await browser.evaluate<T>(expression);
          if (v) return v;
          if (Date.now() > until) throw new Error(`timed out waiting for: ${expression}`);
          await Bun.sleep(100);
        }
      },
      async screenshot() {
        const r = (await cdp.send("Page.captureScreenshot", { format: "png" })) as { data: string };
        return new Uint8Array(Buffer.from(r.data, "base64"));
      },
      async close() {
        try {
          await Promise.race([cdp.send("Browser.close"), Bun.sleep(2000)]);
        } catch {
          // closing anyway
        }
        cdp.close();
        await cleanup();
      },
    };
    return browser;
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** A minimal DevTools protocol client: numbered commands, events by name. */
class Cdp {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Map<string, ((params: unknown) => void)[]>();

  private constructor(private readonly ws: WebSocket) {
    ws.onmessage = (m) => {
      const msg = JSON.parse(String(m.data));
      if (typeof msg.id === "number") {
        const w = this.waiting.get(msg.id);
        this.waiting.delete(msg.id);
        if (msg.error) w?.reject(new Error(`${msg.error.message}`));
        else w?.resolve(msg.result);
      } else if (typeof msg.method === "string") {
        for (const fn of this.listeners.get(msg.method) ?? []) fn(msg.params);
        this.listeners.delete(msg.method);
      }
    };
    ws.onclose = () => {
      for (const w of this.waiting.values()) w.reject(new Error("devtools connection closed"));
      this.waiting.clear();
    };
  }

  static connect(url: string): Promise<Cdp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(new Cdp(ws));
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  once(event: string, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
      const list = this.listeners.get(event) ?? [];
      list.push((p) => {
        clearTimeout(timer);
        resolve(p);
      });
      this.listeners.set(event, list);
    });
  }

  close(): void {
    this.ws.close();
  }
}
