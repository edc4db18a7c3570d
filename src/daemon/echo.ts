/**
 * The built-in echo service (port 7): every byte received is sent back, with
 * backpressure (reading stops while the send buffer is full), and the peer's
 * FIN is answered with ours.
 */
import type { StreamHandle } from "./local-node.ts";

export function echoStream(stream: StreamHandle): void {
  let backlog: Uint8Array | null = null;
  let ended = false;
  const pump = () => {
    for (;;) {
      if (backlog) {
        const n = stream.write(backlog);
        if (n < backlog.length) {
          backlog = backlog.subarray(n);
          return; // wait for "writable"
        }
        backlog = null;
      }
      const chunk = stream.read(256 * 1024);
      if (!chunk) break;
      backlog = chunk;
    }
    if (ended && !backlog) stream.shutdown();
  };
  stream.onEvent = (e) => {
    if (e.type === "readable" || e.type === "writable") pump();
    else if (e.type === "end") {
      ended = true;
      pump();
    } else if (e.type === "closed") backlog = null;
  };
}
