/**
 * The MCP server's connection to the local daemon, through the driver SDK.
 * Made on the first tool call, not at start: the server starts (and lists
 * its tools) when no daemon runs, and a call then fails with `not_running`.
 * A daemon that went away (restarted) is reconnected to on the next call.
 */
import { connect, type ConnectOptions, type Driver } from "../driver/index.ts";

export class DaemonLink {
  private driver: Driver | null = null;
  private connecting: Promise<Driver> | null = null;

  constructor(private readonly options: ConnectOptions = {}) {}

  /** The connected driver; connects (again) if needed. Rejects with NodeError `not_running` when no daemon answers. */
  async get(): Promise<Driver> {
    if (this.driver && !this.driver.closed) return this.driver;
    this.driver = null;
    this.connecting ??= connect({ timeoutMs: 3000, ...this.options }).finally(() => (this.connecting = null));
    const driver = await this.connecting;
    this.driver = driver;
    return driver;
  }

  async close(): Promise<void> {
    const driver = this.driver;
    this.driver = null;
    if (driver && !driver.closed) await driver.close();
  }
}
