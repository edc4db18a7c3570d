/**
 * How CLI commands reach the local daemon: through the same driver SDK apps
 * use. A daemon that is not running becomes `not_running` with a hint.
 */
import { connect, type Driver } from "../driver/index.ts";
import { NodeError } from "../daemon/local-node.ts";
import { CliError, type ErrorCodeName } from "./errors.ts";

export async function withDaemon<T>(fn: (driver: Driver) => Promise<T>, options: { timeoutMs?: number } = {}): Promise<T> {
  let driver: Driver;
  try {
    driver = await connect({ timeoutMs: options.timeoutMs ?? 3000 });
  } catch (e) {
    throw toCliError(e);
  }
  try {
    return await fn(driver);
  } catch (e) {
    throw toCliError(e);
  } finally {
    driver.close();
  }
}

export function toCliError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof NodeError) {
    if (e.code === "not_running") {
      return new CliError("not_running", "the Pilot daemon is not running", "start it with: pilot daemon start");
    }
    return new CliError(e.code as ErrorCodeName, e.message, e.hint);
  }
  return new CliError("internal", e instanceof Error ? e.message : String(e));
}
