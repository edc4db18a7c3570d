/** Helpers for the tests that follow a daemon's local event feed. */
import type { LocalEvent } from "../../../src/driver/index.ts";

/** The next event from `it` that passes `match` (others are skipped), within `ms`. */
export async function nextMatching(it: AsyncIterator<LocalEvent>, match: (e: LocalEvent) => boolean, ms = 20_000): Promise<LocalEvent> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("timed out waiting for an event");
    const r = await Promise.race([it.next(), Bun.sleep(left).then(() => null)]);
    if (r === null) throw new Error("timed out waiting for an event");
    if (r.done) throw new Error("the event stream ended");
    if (match(r.value)) return r.value;
  }
}
