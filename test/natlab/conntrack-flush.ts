/**
 * Flushes the conntrack table of the network namespace this runs in (a NAT
 * router's "reboot": every mapping is forgotten). conntrack-tools is not
 * needed: one ctnetlink IPCTNL_MSG_CT_DELETE with no attributes, through
 * libc's socket/sendto/recv. Run it as: ip netns exec ROUTER bun conntrack-flush.ts
 * Exit code 0 when the kernel acknowledged the flush.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const NLM_F_REQUEST = 1;
const NLM_F_ACK = 4;
const AF_INET = 2;

const libc = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
}).symbols;

const fd = libc.socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
if (fd < 0) {
  console.error("conntrack-flush: cannot open a netfilter netlink socket");
  process.exit(1);
}
// nlmsghdr (16 bytes, host order) + nfgenmsg (family, version, res_id big-endian)
const msg = new Uint8Array(20);
const v = new DataView(msg.buffer);
v.setUint32(0, 20, true);
v.setUint16(4, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, true);
v.setUint16(6, NLM_F_REQUEST | NLM_F_ACK, true);
v.setUint32(8, 1, true);
v.setUint32(12, 0, true);
msg[16] = AF_INET;
const kernel = new Uint8Array(12);
new DataView(kernel.buffer).setUint16(0, AF_NETLINK, true);
if (Number(libc.sendto(fd, ptr(msg), 20, 0, ptr(kernel), 12)) !== 20) {
  console.error("conntrack-flush: sendto failed");
  process.exit(1);
}
const reply = new Uint8Array(4096);
const n = Number(libc.recv(fd, ptr(reply), reply.length, 0));
libc.close(fd);
// NLMSG_ERROR (type 2) with error 0 is the acknowledgement.
const r = new DataView(reply.buffer);
if (n >= 20 && r.getUint16(4, true) === 2 && r.getInt32(16, true) === 0) process.exit(0);
console.error(`conntrack-flush: unexpected answer (${n} bytes, error ${n >= 20 ? r.getInt32(16, true) : "?"})`);
process.exit(1);
