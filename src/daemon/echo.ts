/**
 * The built-in echo service (port 7): every byte received is sent back, with
 * backpressure (reading stops while the send buffer is full), and the peer's
 * FIN is answered with ours. It never holds more than ECHO_CHUNK bytes of its
 * own per stream: a peer that sends without reading fills only the stream's
 * budgeted buffers, and the zero-window timeout ends it.
 */
import type { StreamHandle } from "./local-node.ts";

/** The most the echo service reads ahead of what the stream's send buffer has taken. */
export const ECHO_CHUNK = 16 * 1024;

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
      const chunk = stream.read(ECHO_CHUNK);
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
