/**
 * # Pilot driver SDK
 *
 * Talk to the Pilot network from TypeScript through your local daemon.
 *
 * ```ts
 * import { connect } from "pilot-sdk";       // from this repo: "./src/driver/index.ts"
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
 * ## The secure channel (port 443)
 *
 * A second encryption layer inside one stream, with keys of its own for every
 * connection: an ephemeral X25519 exchange signed by both nodes' identities
 * (the daemons sign; each side checks the other against the key its daemon
 * pins for the stream's address), then AES-256-GCM records. A compromised
 * tunnel key does not expose it. Wire format: docs/PROTOCOL.md §5.
 *
 * ```ts
 * const server = await pilot.listenSecure();           // port 443
 * server.on("connection", (socket) => socket.pipe(socket));
 * const socket = await pilot.dialSecure("agent-b");    // a SecureSocket (Duplex), established
 * console.log(socket.channelId);                       // the same on both ends, new for each connection
 *
 * await pilot.serveHttp(443, handler, { secure: true });   // node:http over it
 * await pilot.fetch("https://agent-b/api/secrets");         // https: = the secure channel, default port 443
 * const agent = pilot.httpAgent({ secure: true });          // for http.request / SDKs
 * ```
 *
 * `connectSecure(port, host)` is the `net.createConnection`-style form.
 * A refused identity fails with `unauthorized` (NodeError from dialSecure;
 * SecureSocketError with `secureCode` on sockets and a server's
 * 'handshakeError'). There is no TLS and no certificate in any of this.
 *
 * ## Local events
 *
 * What happens on this node (trust requests, messages, files, peers coming
 * and going) as EventEmitter events or an async iterator; see events.ts.
 *
 * ```ts
 * pilot.on("trust.request", (e) => console.log(e.data.address, e.data.reason));
 * for await (const e of pilot.events({ types: ["message", "peer.offline"] })) { ... }
 * await pilot.approve("agent-b");                 // typed trust operations
 * ```
 *
 * Naming peers: a full address `N:NNNN.HHHH.LLLL`, a bare node id (`42`,
 * network 0), or a hostname the registry knows. In URLs, where ":" means a
 * port, write an address with dashes: `http://0-0000-0000-0004/`
 * (`urlHostOf(address)`); `fetch("http://0:0000.0000.0004/")` is refused
 * with a hint that says so. A node may dial, fetch from and ping its own
 * address: that loops back inside the daemon, without the tunnel.
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
export { PilotAgent, serveHttp, pilotFetch, type PilotAgentOptions, type PilotHttpServer, type ServeHttpOptions, type HttpHandler, type HttpHandlerOrServer, type HttpDriver } from "./http.ts";
export { SecureSocket, SecureServer, SecureSocketError, SECURE_PORT, type SecureSocketOptions, type SecureIdentity } from "./secure.ts";
export { NodeError, PilotSocketError, type NodeErrorCode } from "./errors.ts";
export { parseTarget, urlHostOf, type Target } from "./target.ts";
export { EventStream, verifyWebhookSignature, type EventsOptions, type LocalEvent, type CoreEvent, type CoreEventData, type CoreEventType, type SignatureCheck } from "./events.ts";
export type { HandshakeResult, ApproveResult, RejectResult, UntrustResult, PendingResult, PendingRequest, OutgoingRequest, TrustedResult, TrustedPeer, SetTagsResult, SetHostnameResult, SetVisibilityResult, RecentEventsResult, PublishEventResult } from "../shared/control.ts";
export { Inbox, sendMessage, sendFile, type InboxMessage, type InboxListOptions, type SendMessageOptions, type SendFileOptions, type MessageSendResult, type InboxEntry, type InboxListResult, type FileSendResult, type ReceivedListResult, type OutboxListResult } from "./exchange.ts";
export { Publisher, PubsubError, PubsubEvent, Subscription, type BrokerOptions, type PublishResult, type SubscribeOptions } from "./pubsub.ts";
export { TaskClient, taskClient, submitTask, TASK_STATES, TASK_LIMITS, type TaskInfo, type TaskState, type TaskEvent, type TaskEventData, type TaskEventType, type SubmitTaskOptions, type TaskResultOptions, type TaskList, type TaskQueue } from "./tasks.ts";
