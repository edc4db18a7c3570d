/**
 * Task services in one process, over the in-memory FakeNetwork: each node
 * gets a real TasksService with a real identity (signatures are real), its
 * own directory (or none), and a ServiceContext whose trust, openness,
 * reachability and registry are set by the test. Real-process tests live in
 * tasks.test.ts; these exercise the protocol's corners fast.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity, type Identity } from "../../../src/crypto/identity.ts";
import { EventBus, type LocalEvent } from "../../../src/daemon/event-bus.ts";
import { NodeError } from "../../../src/daemon/local-node.ts";
import type { ServiceContext } from "../../../src/daemon/services/service.ts";
import { TasksService, type TasksServiceOptions } from "../../../src/daemon/services/tasks/tasks-service.ts";
import { formatAddress, nodeOf, parseAddress, type Address } from "../../../src/protocol/address.ts";
import type { TaskReceipt } from "../../../src/protocol/receipt.ts";
import { createLogger } from "../../../src/util/log.ts";
import { FakeNetwork, type FakeLocalNode } from "../../support/fake-local-node.ts";

export interface TestNode {
  readonly id: number;
  readonly address: Address;
  readonly name: string;
  readonly node: FakeLocalNode;
  readonly identity: Identity;
  readonly events: EventBus;
  readonly trusted: Set<number>;
  readonly dir: string | null;
  service: TasksService | null;
  open: boolean;
  /** Private: streams from nodes it does not trust are refused (as the data plane does). */
  private: boolean;
  /** Unreachable: its streams are cut and dials to or from it fail (the service keeps running). */
  offline: boolean;
  score: number | null;
  /** Whether the context offers reputationOf at all. */
  reputationHook: boolean;
  receipts: TaskReceipt[];
  /** What submitReceipt does: throw registry_unavailable (default: the registry is down) or accept. */
  registryTakesReceipts: boolean;
  logs: string[];
  call(method: string, params?: Record<string, unknown>): Promise<any>;
  start(options?: TasksServiceOptions): void;
  stop(): void;
  seen(type: string): LocalEvent[];
}

export interface TaskHarness {
  network: FakeNetwork;
  dir: string;
  nodes: Map<string, TestNode>;
  add(name: string, id: number, options?: { persistent?: boolean; serviceOptions?: TasksServiceOptions }): TestNode;
  trust(a: string, b: string): void;
  close(): void;
}

export const FAST: TasksServiceOptions = {
  timers: { tickMs: 50, backoffMinMs: 50, backoffMaxMs: 200, pollMs: 300, dialedIdleMs: 200, submitWaitMs: 1000, receiptRetryMinMs: 50, receiptRetryMaxMs: 200, graceMs: 500, stallMs: 1000 },
};

export function startTaskHarness(): TaskHarness {
  const network = new FakeNetwork();
  const dir = mkdtempSync(join(tmpdir(), "pilot-tasks-"));
  const nodes = new Map<string, TestNode>();
  const byAddress = (a: Address) => [...nodes.values()].find((n) => n.address === a);

  const harness: TaskHarness = {
    network,
    dir,
    nodes,
    add(name, id, options = {}) {
      const node = network.addNode(id, { hostname: name });
      const identity = generateIdentity();
      const events = new EventBus();
      const nodeDir = options.persistent === false ? null : join(dir, name, "tasks");
      const logs: string[] = [];
      let offline = false;
      const t: TestNode = {
        id,
        address: node.address,
        name,
        node,
        identity,
        events,
        trusted: new Set(),
        dir: nodeDir,
        service: null,
        open: false,
        private: false,
        get offline() {
          return offline;
        },
        set offline(v: boolean) {
          offline = v;
          if (v) for (const st of [...node.streams]) st.abort();
        },
        score: null,
        reputationHook: true,
        receipts: [],
        registryTakesReceipts: false,
        logs,
        async call(method, params = {}) {
          if (!t.service) throw new NodeError("not_running", "service stopped");
          const fn = t.service.methods()[method];
          if (!fn) throw new Error(`no method ${method}`);
          return await fn(params);
        },
        start(serviceOptions) {
          const context: ServiceContext = {
            address: node.address,
            log: createLogger("tasks", { level: "debug", sink: (l) => logs.push(l) }),
            events,
            dir: nodeDir,
            listen: (port, onAccept) => node.listen(port, onAccept),
            dial: async (target, port) => {
              const peer = byAddress(target);
              if (t.offline || !peer || peer.offline) throw new NodeError("unreachable", `${formatAddress(target)} did not answer`);
              if (peer.private && !peer.trusted.has(t.id)) throw new NodeError("not_trusted", `${formatAddress(target)} does not trust you`);
              return node.dial(target, port);
            },
            resolveTarget: async (text) => {
              const byName = [...nodes.values()].find((n) => n.name === text);
              if (byName) return byName.address;
              const a = parseAddress(text);
              if (!a.ok) throw new NodeError("not_found", `no node ${text}`);
              return a.value;
            },
            admits: (a) => t.trusted.has(nodeOf(a)) || t.open,
            trusts: (a) => t.trusted.has(nodeOf(a)),
            signTaskStatement: (s) => identity.sign(s),
            peerKey: async (a) => {
              const peer = byAddress(a);
              if (!peer) throw new NodeError("not_found", "no such node");
              return peer.identity.publicKey;
            },
            submitReceipt: async (r) => {
              if (!t.registryTakesReceipts) throw new NodeError("registry_unavailable", "the registry did not answer");
              t.receipts.push(r);
            },
            ...(t.reputationHook
              ? {
                  reputationOf: async (a: Address) => {
                    const peer = byAddress(a);
                    if (!peer || peer.score === null) throw new NodeError("registry_unavailable", "no score");
                    return peer.score;
                  },
                }
              : {}),
          };
          t.service = new TasksService(context, { ...FAST, ...options.serviceOptions, ...serviceOptions, timers: { ...FAST.timers, ...options.serviceOptions?.timers, ...serviceOptions?.timers } });
          t.service.start();
        },
        stop() {
          t.service?.stop();
          t.service = null;
        },
        seen(type) {
          return events.recent().filter((e) => e.type === type);
        },
      };
      nodes.set(name, t);
      t.start();
      return t;
    },
    trust(a, b) {
      const na = nodes.get(a)!;
      const nb = nodes.get(b)!;
      na.trusted.add(nb.id);
      nb.trusted.add(na.id);
    },
    close() {
      for (const n of nodes.values()) n.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return harness;
}

/** Polls `fn` until it returns a truthy value (or throws after `ms`). */
export async function until<T>(fn: () => Promise<T> | T, ms = 5000, what = "condition"): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (e) {
      last = e;
    }
    await Bun.sleep(20);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}
