/**
 * dial-watch.ts on its own: when the registry is asked about a dial's peer,
 * how often, and what the error says. (The whole path, kill -9 -> a quick
 * 502 through the gateway, is in test/gateway/offline.test.ts.)
 */
import { describe, expect, test } from "bun:test";
import { addressOf } from "../../src/protocol/address.ts";
import { OFFLINE_CHECK_MS, offlineCheckDelay, offlineDialError, PresenceCheck, type PeerPresence } from "../../src/daemon/dial-watch.ts";

describe("dial-watch", () => {
  test("the check waits OFFLINE_CHECK_MS, or four round trips of a slow path", () => {
    expect(offlineCheckDelay(null)).toBe(OFFLINE_CHECK_MS);
    expect(offlineCheckDelay(0.3)).toBe(OFFLINE_CHECK_MS);
    expect(offlineCheckDelay(400)).toBe(1600);
  });

  test("one question per peer at a time and per second, shared by every dial; failures mean 'cannot tell'", async () => {
    let now = 0;
    const asked: number[] = [];
    let answer: PeerPresence | Error = { online: false, lastSeen: 1000 };
    const check = new PresenceCheck(async (node) => {
      asked.push(Number(node));
      if (answer instanceof Error) throw answer;
      return answer;
    }, () => now);
    const a = addressOf(0, 7);
    const [x, y] = await Promise.all([check.presence(a), check.presence(a)]);
    expect(x).toEqual({ online: false, lastSeen: 1000 });
    expect(y).toBe(x);
    expect(asked.length).toBe(1);
    now = 999;
    await check.presence(a);
    expect(asked.length).toBe(1);
    now = 1000;
    answer = new Error("registry unreachable");
    expect(await check.presence(a)).toBeNull();
    expect(asked.length).toBe(2);
  });

  test("at most 64 peers are asked about at once", async () => {
    const check = new PresenceCheck(() => new Promise<PeerPresence>(() => {}), () => 0);
    for (let i = 1; i <= 64; i++) void check.presence(addressOf(0, i));
    expect(await check.presence(addressOf(0, 65))).toBeNull();
  });

  test("the error is unreachable and says why", () => {
    const e = offlineDialError(addressOf(0, 4), 712, { online: false, lastSeen: 10_000 }, 13_400);
    expect(e.code).toBe("unreachable");
    expect(e.message).toBe("0:0000.0000.0004 is offline: no answer to the connection request within 0.7 s, and the registry says its daemon is not running; the registry last heard from it 3 s ago");
  });
});
