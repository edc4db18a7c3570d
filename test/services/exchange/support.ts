/** Helpers for the port-1001 integration tests: config before start, waiting, and a raw client that speaks the wire format. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../../src/driver/index.ts";
import { decodeExchangeFrame, encodeExchangeFrame, type ExchangeFrame } from "../../../src/protocol/exchange.ts";
import type { Cluster } from "../../support/cluster.ts";

/** Writes `config.json` into the home daemon `name` will use, before it starts. */
export function configure(c: Cluster, name: string, config: Record<string, string>): void {
  const home = join(c.dir, name);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  writeFileSync(join(home, "config.json"), JSON.stringify(config));
}

export async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function isDead(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/**
 * An app on daemon `home` dials `target` port 1001 itself and sends `frames`
 * as they are (whatever they claim); returns the frames that came back.
 */
export async function rawExchange(home: string, target: string, frames: (ExchangeFrame | Uint8Array)[], answers: number): Promise<ExchangeFrame[]> {
  const d = await connect({ home });
  try {
    const s = await d.dial(target, 1001);
    const out: ExchangeFrame[] = [];
    let buf = Buffer.alloc(0);
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${out.length} of ${answers} answers`)), 15_000);
      s.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const n = buf.readUInt32BE(0);
          const r = decodeExchangeFrame(new Uint8Array(buf.subarray(4, 4 + n)));
          buf = buf.subarray(4 + n);
          if (!r.ok) return reject(new Error(`bad answer: ${r.error.message}`));
          out.push(r.value);
          if (out.length >= answers) {
            clearTimeout(timer);
            resolve();
          }
        }
      });
      s.on("error", (e) => {
        clearTimeout(timer);
        out.length >= answers ? resolve() : reject(e);
      });
      s.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    for (const f of frames) {
      const body = f instanceof Uint8Array ? f : encodeExchangeFrame(f);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      s.write(head);
      s.write(body);
    }
    await done;
    s.destroy();
    return out;
  } finally {
    await d.close();
  }
}
