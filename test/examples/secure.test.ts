/**
 * examples/secure-server.ts and examples/secure-client.ts (the tutorial's
 * port 443), run for real: the server as agent-a's user, the client as
 * agent-b's, after agent-b asked for and agent-a granted trust. A third
 * daemon, "stranger", trusts no one.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import type { Cluster } from "../support/cluster.ts";
import { runExample, useTwoAgents } from "./support.ts";

const SECRETS = JSON.stringify({ message: "This payload is double-encrypted", tunnel: "AES-256-GCM (shared tunnel key)", conn: "AES-256-GCM (per-connection X25519 key)" });

const agents = useTwoAgents();
let c: Cluster;
beforeAll(() => {
  c = agents.cluster;
});

describe("secure-server + secure-client", () => {
  test("the client dials port 443 securely (by hostname and address) and prints the tutorial's status and body; https: fetch reaches it too", async () => {
    const a = c.daemon("a");
    const b = c.daemon("b");
    const server = runExample("secure-server.ts", a);
    try {
      const ready = await server.waitFor(/Secure HTTP server on pilot port 443 \((\S+)\)\n/);
      expect(ready[1]).toBe(a.address);

      for (const target of ["agent-a", a.address]) {
        const client = runExample("secure-client.ts", b, { args: [target] });
        const code = await client.exitCode();
        if (code !== 0) throw new Error(`secure-client ${target} exited ${code}:\n${client.output}`);
        expect(client.stdout).toBe(`Status: 200\nBody: ${SECRETS}\n`);
        expect(client.stderr).toBe("");
      }
      const missing = runExample("secure-client.ts", b, { args: ["agent-a", "/nope"] });
      expect(await missing.exitCode()).toBe(1);
      expect(missing.stdout).toBe('Status: 404\nBody: {"error":"not found"}\n');

      const { connect } = await import("../../src/driver/index.ts");
      const pilot = await connect({ home: b.home });
      try {
        const res = await pilot.fetch("https://agent-a/api/secrets");
        expect(res.status).toBe(200);
        expect(await res.text()).toBe(`${SECRETS}\n`);
      } finally {
        await pilot.close();
      }

      await server.waitFor(/(GET \/api\/secrets from .*\n[^]*){3}/);
      const seen = server.stdout.split("\n").filter((l) => l.startsWith("secure-server: GET "));
      expect(seen.length).toBe(4);
      for (const line of seen) expect(line).toMatch(new RegExp(`from ${b.address.replace(/\./g, "\\.")}:\\d+ -> (200|404) `));
    } finally {
      expect(await server.stop("SIGTERM")).toBe(0);
    }
    expect(server.stdout).toContain("secure-server: SIGTERM received, shutting down");
  });

  test("a second secure-server on the same agent: port 443 is taken, one error line and its hint, exit 1, no stack trace", async () => {
    const first = runExample("secure-server.ts", c.daemon("a"));
    try {
      await first.waitFor(/Secure HTTP server on pilot port 443/);
      const second = runExample("secure-server.ts", c.daemon("a"));
      expect(await second.exitCode()).toBe(1);
      expect(second.stdout).toBe("");
      expect(second.stderr).toBe("error: port 443 is already in use\nhint: pick another port, or stop the program that listens on it\n");
      // The first one is unharmed.
      const client = runExample("secure-client.ts", c.daemon("b"), { args: ["agent-a"] });
      expect(await client.exitCode()).toBe(0);
    } finally {
      await first.stop();
    }
  });

  test("an agent without trust: exit 1 with the reason and a hint; no target: usage, exit 2", async () => {
    const server = runExample("secure-server.ts", c.daemon("a"));
    try {
      await server.waitFor(/Secure HTTP server on pilot port 443/);
      const client = runExample("secure-client.ts", c.daemon("stranger"), { args: ["agent-a"] });
      expect(await client.exitCode()).toBe(1);
      expect(client.stdout).toBe("");
      expect(client.stderr).toMatch(/^error: no such node\nhint: agent-a does not exist, or it is private and has not trusted you/);
      expect(server.stdout).not.toContain(" from ");
      const usage = runExample("secure-client.ts", c.daemon("b"));
      expect(await usage.exitCode()).toBe(2);
      expect(usage.stderr).toContain("usage: bun examples/secure-client.ts TARGET [PATH]");
    } finally {
      await server.stop();
    }
  });
});
