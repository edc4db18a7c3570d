/**
 * Run inside a network namespace by udp-df.test.ts: opens the daemon's UDP
 * socket on `::` (dual stack, as the daemon does) and sends, to `host:port`,
 * one 1472-byte datagram with don't-fragment and one without, then a run of
 * eight DF datagrams of `runSize` bytes (GSO). Prints one JSON line: what the
 * socket refused (EMSGSIZE) and its counters.
 *
 *   bun test/daemon/udp-df-helper.ts HOST PORT RUN_SIZE
 */
import { UdpSocket } from "../../src/daemon/udp-socket.ts";

const [host, portText, runText] = process.argv.slice(2);
const port = Number(portText);
const runSize = Number(runText);
const refused: number[] = [];
const socket = await UdpSocket.open({ hostname: "::", port: 0, onDatagram: () => {} });
socket.onDontFragmentRefused = (frame) => refused.push(frame.length);
socket.send(new Uint8Array(1472).fill(1), host!, port, true);
socket.flush();
socket.send(new Uint8Array(1472).fill(2), host!, port);
socket.flush();
for (let i = 0; i < 8; i++) socket.send(new Uint8Array(runSize).fill(3), host!, port, true);
socket.flush();
await Bun.sleep(50);
console.log(JSON.stringify({ refused, dualStack: socket.dualStack, gsoSends: socket.gsoSends, dfDatagrams: socket.dfDatagrams, sent: socket.sentDatagrams }));
socket.close();
process.exit(0);
