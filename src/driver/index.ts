/**
 * # Pilot driver SDK
 *
 * Talk to the Pilot network from TypeScript through your local daemon.
 *
 * ```ts
 * import { connect } from "pilot/driver";
 *
 * const pilot = await connect();              // the daemon of $PILOT_HOME (~/.pilot)
 * console.log(pilot.address, pilot.hostname); // "0:0000.0000.002A", "agent-a"
 *
 * // Serve HTTP on Pilot port 80 with plain node:http (or an express app).
 * await pilot.serveHttp(80, (req, res) => res.end(JSON.stringify({ status: "healthy" })));
 *
 * // Call another agent by hostname, address or node id.
 * const res = await pilot.fetch("http://agent-b/api/status");
 * console.log(await res.json());
 *
 * // Or use streams directly: they are ordinary Duplex sockets.
 * const socket = await pilot.dial("agent-b", 1000);
 * socket.end("hello");
 * ```
 *
 * Naming peers: a full address `N:NNNN.HHHH.LLLL`, a bare node id (`42`,
 * network 0), or a hostname the registry knows. In URLs, where ":" means a
 * port, write an address as `NNNN.HHHH.LLLL`.
 *
 * Errors: promise-returning calls reject with `NodeError` (`code`, `message`,
 * `hint`); sockets and servers emit `PilotSocketError` ('error' event), whose
 * `code` is the errno-style name (`ECONNRESET`, `ECONNREFUSED`, ...) and
 * whose `pilotCode` is the Pilot code. A daemon that is not running gives
 * `not_running` with a hint to run `pilot daemon start`; a daemon that goes
 * away fails every call in flight at once and resets every socket.
 *
 * @module
 */

export { connect, Driver, type ConnectOptions, type DialOptions, type SendOptions } from "./driver.ts";
export { PilotSocket, type PilotSocketOptions, type PilotAddressInfo } from "./socket.ts";
export { PilotServer } from "./server.ts";
export { DatagramSocket, type Datagram, type DatagramSocketOptions } from "./datagram.ts";
export { PilotAgent, serveHttp, pilotFetch, type PilotHttpServer, type HttpHandler, type HttpHandlerOrServer, type HttpDriver } from "./http.ts";
export { NodeError, PilotSocketError, type NodeErrorCode } from "./errors.ts";
export { parseTarget, type Target } from "./target.ts";
