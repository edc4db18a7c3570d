/**
 * File transfer (port 1001, first frame 0x10-0x1F): streamed, SHA-256
 * verified, resumable, written 0600 under `PILOT_HOME/received/`.
 *
 *   sender                                   receiver
 *   file_offer {transfer, size, name}  ->     admission, size and quota checks
 *                                      <-     file_accept {offset}   (bytes durably stored already)
 *   file_data ... (from offset)        ->     hashed, written (the stream pauses while the disk lags),
 *                                             fsynced every CHECKPOINT bytes and the offset recorded
 *   file_end {sha256}                  ->     compared, fsynced, linked into received/ under a safe name
 *                                      <-     file_done {sha256, size, name}   (only now: durably stored)
 *
 * `transfer` is derived by the sender from the file (path, inode, size, mtime,
 * name), so sending the same file again after a kill -9 of either side or a
 * cut resumes where the receiver's fsynced offset says; the receiver keys
 * partial files by (sender, transfer) and names them from a hash of that key,
 * never from the peer's text. A finished transfer offered again is answered
 * with file_done at once. Within one `file_send` call the sender redials and
 * resumes by itself until no progress was made for `timeout_ms`.
 *
 * Daemon calls: file_send, file_transfers, files_received, files_clear.
 */
import { createHash, randomUUID } from "node:crypto";
import { closeSync, existsSync, fsyncSync, linkSync, readFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, type Stats } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, isAbsolute, join } from "node:path";
import { formatAddress, type Address } from "../../../protocol/address.ts";
import { EXCHANGE_CHUNK, ExchangeError, fileDataFrameBody, NAME_MAX_BYTES, type ExchangeFrame, type FileOfferFrame } from "../../../protocol/exchange.ts";
import type { FileSendResult, FileTransferInfo, FileTransfersResult, ReceivedClearResult, ReceivedListResult } from "../../../protocol/exchange-calls.ts";
import { WellKnownPort } from "../../../protocol/ports.ts";
import { NodeError, type NodeErrorCode } from "../../local-node.ts";
import type { DaemonService, ServiceContext } from "../service.ts";
import { ExchangeConnection } from "./connection.ts";
import { sanitizeFileName, withSuffix } from "./file-names.ts";
import { FILE_OVERHEAD, FileStore, type PartialRow } from "./file-store.ts";
import { exchangeLimits, type ExchangeLimits } from "./limits.ts";
import { ExchangePort } from "./port.ts";
import { WriteBehind } from "./write-behind.ts";

type Params = Record<string, unknown>;

/**
 * The receiver fsyncs and records its offset at least every this many bytes,
 * or this often. Only a resume after a machine restart depends on it (within
 * one boot the whole partial file counts), so it is sparse: frequent fsyncs
 * cut the disk path to a quarter (4 MiB: ~580 MB/s, 64 MiB: ~2.4 GB/s here).
 */
const CHECKPOINT_BYTES = 64 * 1024 * 1024;
const CHECKPOINT_MS = 5_000;
/** A transfer's stream pauses while more than this waits for the disk (see WriteBehind for all of them together). */
const WRITE_BACKLOG = 4 * 1024 * 1024;
/** Partial files idle for this long may be evicted to make room for another peer. */
const PARTIAL_IDLE_EVICT_MS = 3_600_000;
/** Partial files untouched for this long are removed. */
const PARTIAL_MAX_AGE_MS = 7 * 24 * 3_600_000;
const DEFAULT_TIMEOUT_MS = 30_000;
/** The sender reads the file in blocks of this size (each sent as EXCHANGE_CHUNK frames), this many blocks ahead of the stream. */
const READ_BLOCK = 1024 * 1024;
const READ_AHEAD = 2;
/** How long the sender waits for file_done after file_end (the receiver fsyncs the file). */
const DONE_TIMEOUT_MS = 300_000;

const key = (sender: string, transfer: string) => `${sender}/${transfer}`;

/** This boot of the machine (Linux); a partial file written during the same boot survived whatever killed the daemon. */
const BOOT_ID: string | null = (() => {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || null;
  } catch {
    return null;
  }
})();

export class FilesService implements DaemonService {
  readonly name = "files";
  readonly limits: ExchangeLimits;
  private store: FileStore | null = null;
  private unregister: (() => void) | null = null;
  private root = "";
  private ownRoot = false;
  receivedDir = "";
  private partialDir = "";
  private readonly incoming = new Map<string, IncomingTransfer>();
  /** Received data waiting for the disk: WRITE_BACKLOG per transfer, `files_memory_total` for all of them. */
  readonly writeBehind: WriteBehind<IncomingTransfer>;
  private readonly outgoing = new Map<string, { info: FileTransferInfo; bytes: () => number }>();
  private lastPrune = 0;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly context: ServiceContext) {
    this.limits = exchangeLimits(context.config);
    this.writeBehind = new WriteBehind(WRITE_BACKLOG, this.limits.filesMemoryTotal);
  }

  start(): void {
    if (this.context.dir) {
      this.root = this.context.dir;
      this.receivedDir = join(dirname(this.context.dir), "received");
    } else {
      this.root = mkdtempSync(join(tmpdir(), "pilot-files-"));
      this.ownRoot = true;
      this.receivedDir = join(this.root, "received");
    }
    this.partialDir = join(this.root, "partial");
    for (const d of [this.root, this.receivedDir, this.partialDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
    this.store = FileStore.open(this.context.dir ? join(this.context.dir, "files.db") : null);
    this.sweepPartials(true);
    this.unregister = ExchangePort.of(this.context).register("files", {
      admits: (node) => this.context.admits(node),
      accept: (connection, first) => this.accept(connection, first),
    });
    this.sweepTimer = setInterval(() => this.sweepPartials(false), 3_600_000);
    this.sweepTimer.unref?.();
  }

  stop(): void {
    this.unregister?.();
    this.unregister = null;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const t of this.incoming.values()) t.abort();
    this.incoming.clear();
    this.store?.close();
    this.store = null;
    if (this.ownRoot) rmSync(this.root, { recursive: true, force: true });
  }

  methods(): Record<string, (params: Params) => unknown> {
    return {
      file_send: (p) => this.send(p),
      file_transfers: () => this.transfers(),
      files_received: () => this.received(),
      files_clear: () => this.clear(),
    };
  }

  get db(): FileStore {
    if (!this.store) throw new NodeError("closed", "the files service is not running");
    return this.store;
  }

  partialPath(file: string): string {
    return join(this.partialDir, file);
  }

  // ---- storage housekeeping ---------------------------------------------------

  /** Removes partial files nobody records, records whose file is gone, and partials untouched for a week. */
  private sweepPartials(atStart: boolean): void {
    const db = this.store;
    if (!db) return;
    const now = Date.now();
    const known = new Set<string>();
    for (const p of db.partials()) {
      if (this.incoming.has(key(p.sender, p.transfer))) {
        known.add(p.file);
        continue;
      }
      if (now - p.updated_at > PARTIAL_MAX_AGE_MS || !existsSync(this.partialPath(p.file))) this.dropPartial(p);
      else known.add(p.file);
    }
    if (atStart) {
      for (const f of readdirSync(this.partialDir)) if (!known.has(f)) rmSync(join(this.partialDir, f), { force: true });
    }
  }

  dropPartial(p: PartialRow): void {
    rmSync(this.partialPath(p.file), { force: true });
    this.store?.removePartial(p.sender, p.transfer);
  }

  /** Forgets received files that were moved or deleted (at most once a minute unless forced). */
  pruneReceived(force = false): void {
    const now = Date.now();
    if (!force && now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    for (const r of this.db.received()) if (!existsSync(join(this.receivedDir, r.name))) this.db.forgetReceived(r.seq);
  }

  /** Makes room for `need` more bytes from `sender` by evicting partial transfers; the refusal if that is not enough. */
  makeRoom(sender: string, transfer: string, size: number, need: number): { code: string; message: string } | null {
    const db = this.db;
    if (size > Math.min(this.limits.filesQuota, this.limits.filesQuotaTotal)) {
      return { code: ExchangeError.TooLarge, message: `a file of ${size} bytes is larger than this node accepts (${Math.min(this.limits.filesQuota, this.limits.filesQuotaTotal)} bytes)` };
    }
    this.pruneReceived();
    const evictable = (p: PartialRow, anyone: boolean) =>
      !(p.sender === sender && p.transfer === transfer) && !this.incoming.has(key(p.sender, p.transfer)) && (p.sender === sender || (anyone && Date.now() - p.updated_at > PARTIAL_IDLE_EVICT_MS));
    // The sender's own older partial transfers go first; they only cost it a resume.
    for (const p of db.partials(sender)) {
      if (db.usage(sender) + need <= this.limits.filesQuota) break;
      if (evictable(p, false)) this.dropPartial(p);
    }
    if (db.usage(sender) + need > this.limits.filesQuota) {
      return { code: ExchangeError.QuotaExceeded, message: `your share of this node's file storage is full (${db.usage(sender)} of ${this.limits.filesQuota} bytes held); the receiver must remove received files first` };
    }
    for (const p of db.partials()) {
      if (db.usage() + need <= this.limits.filesQuotaTotal) break;
      if (evictable(p, true)) this.dropPartial(p);
    }
    if (db.usage() + need > this.limits.filesQuotaTotal) {
      return { code: ExchangeError.QuotaExceeded, message: "this node's file storage is full; the receiver must remove received files first" };
    }
    return null;
  }

  // ---- receiving --------------------------------------------------------------

  private accept(connection: ExchangeConnection, first: ExchangeFrame): void {
    if (first.kind !== "file_offer") return connection.refuse(ExchangeError.BadFrame, `a files stream starts with file_offer, not ${first.kind}`);
    const sender = formatAddress(connection.remote);
    const transfer = Buffer.from(first.transfer).toString("hex");
    const k = key(sender, transfer);
    // The same sender offering the same transfer again (it restarted, or lost the stream): the new stream wins.
    const previous = this.incoming.get(k);
    const t = new IncomingTransfer(this, this.context, connection, sender, transfer, first);
    this.incoming.set(k, t);
    connection.onceClosed(() => {
      if (this.incoming.get(k) === t) this.incoming.delete(k);
    });
    void t.settled.then(() => {
      for (const other of this.writeBehind.drop(t)) other.resumeReading();
    });
    connection.pause();
    void t.begin(previous);
  }

  // ---- sending ----------------------------------------------------------------

  private async send(p: Params): Promise<FileSendResult> {
    const path = str(p, "path");
    if (!isAbsolute(path)) throw new NodeError("invalid_argument", `"path" must be absolute, got "${path}"`);
    const name = p.name === undefined ? basename(path) : str(p, "name");
    if (Buffer.byteLength(name) > NAME_MAX_BYTES) throw new NodeError("invalid_argument", `the name is longer than ${NAME_MAX_BYTES} bytes`);
    const timeoutMs = p.timeout_ms === undefined ? DEFAULT_TIMEOUT_MS : int(p, "timeout_ms", 1, 24 * 3_600_000);
    const ref = p.ref === undefined ? randomUUID() : str(p, "ref");
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (e) {
      throw fileOpenError(e, path);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new NodeError("invalid_argument", `${path} is not a regular file`);
      const address = await this.context.resolveTarget(str(p, "target"));
      const target = formatAddress(address);
      const transfer = transferId(path, st, name);
      const started = Date.now();
      const sender = new OutgoingTransfer(this.context, fh, address, target, transfer, name, st.size, timeoutMs);
      this.outgoing.set(ref, {
        info: { ref, direction: "out", peer: target, name, size: st.size, bytes: 0, resumed_from: 0, started_at: new Date(started).toISOString() },
        bytes: () => sender.position,
      });
      try {
        const r = await sender.run();
        return { target, name: r.name, bytes: st.size, sha256: r.sha256, resumed_from: r.resumedFrom, seconds: (Date.now() - started) / 1000 };
      } finally {
        this.outgoing.delete(ref);
      }
    } finally {
      await fh.close().catch(() => {});
    }
  }

  private transfers(): FileTransfersResult {
    const out: FileTransferInfo[] = [];
    for (const { info, bytes } of this.outgoing.values()) out.push({ ...info, bytes: bytes() });
    for (const t of this.incoming.values()) if (t.info) out.push(t.info);
    return { transfers: out };
  }

  private received(): ReceivedListResult {
    const db = this.db;
    this.pruneReceived(true);
    const rows = db.received();
    return {
      dir: this.receivedDir,
      files: rows.map((r) => ({ name: r.name, path: join(this.receivedDir, r.name), bytes: r.bytes, sha256: r.sha256, from: r.sender, received_at: new Date(r.received_at).toISOString() })),
      total: rows.length,
      bytes: rows.reduce((n, r) => n + r.bytes, 0),
      partial: db.partials().length,
    };
  }

  private clear(): ReceivedClearResult {
    const db = this.db;
    let cleared = 0;
    let bytes = 0;
    for (const r of db.received()) {
      rmSync(join(this.receivedDir, r.name), { force: true });
      db.forgetReceived(r.seq);
      cleared++;
      bytes += r.bytes;
    }
    return { cleared, bytes };
  }
}

export function filesService(context: ServiceContext): DaemonService {
  return new FilesService(context);
}

/**
 * One file arriving. The stream is paused while the disk lags (more than
 * WRITE_BACKLOG bytes waiting), so neither side buffers the file.
 */
class IncomingTransfer {
  private base: FileTransferInfo | null = null;
  private fh: FileHandle | null = null;
  private row: PartialRow | null = null;
  private readonly hasher = createHash("sha256");
  /** Bytes taken from the stream (hashed), written, and known durable. */
  private received = 0;
  private written = 0;
  private durable = 0;
  private resumedFrom = 0;
  private readonly pending: Uint8Array[] = [];
  private writing = false;
  private syncing: Promise<void> | null = null;
  private lastCheckpoint = Date.now();
  private readonly startedAt = Date.now();
  private endSha: Uint8Array | null = null;
  private finishing = false;
  private closing = false;
  private failed = false;
  private idleWaiters: (() => void)[] = [];
  /** Until begin() is done, a close is handled there (so `settled` never comes before it). */
  private beginning = true;
  /** Resolves once this transfer is over and its file closed (finished, or kept for a resume). */
  readonly settled: Promise<void>;
  private settle!: () => void;

  constructor(
    private readonly service: FilesService,
    private readonly context: ServiceContext,
    private readonly connection: ExchangeConnection,
    private readonly sender: string,
    private readonly transfer: string,
    private readonly offer: FileOfferFrame,
  ) {
    this.settled = new Promise((resolve) => (this.settle = resolve));
  }

  private get db(): FileStore {
    return this.service.db;
  }

  /** Progress for file_transfers (bytes written so far), while the transfer runs. */
  get info(): FileTransferInfo | null {
    return this.base && { ...this.base, bytes: this.written };
  }

  private refuse(code: string, message: string): void {
    this.failed = true;
    this.connection.refuse(code, message, this.offer.transfer);
  }

  /** Starts once `previous` (a stale stream of the same transfer) is wound down. */
  async begin(previous?: IncomingTransfer): Promise<void> {
    try {
      if (previous) {
        previous.abort();
        await previous.settled;
      }
      if (!this.connection.isClosed) await this.prepare();
    } finally {
      this.beginning = false;
    }
    // The stream closed while it was being prepared: wind down now.
    if (this.connection.isClosed) await this.closed();
  }

  private async prepare(): Promise<void> {
    const { connection, offer, sender, transfer } = this;
    connection.pause();
    // A sender that half-closes before file_end will not finish this transfer: keep what arrived for a resume.
    connection.handler = { onFrame: (f) => this.onFrame(f), onEnd: () => this.endSha || connection.close(), onClose: () => void this.closed() };
    try {
      const db = this.db;
      // Finished before (its file_done was lost): answer at once.
      const done = db.completed(sender, transfer);
      if (done && done.bytes === offer.size && existsSync(join(this.service.receivedDir, done.name))) {
        connection.send({ kind: "file_done", transfer: offer.transfer, sha256: Buffer.from(done.sha256, "hex"), size: done.bytes, name: done.name });
        connection.end();
        return;
      }
      let row = db.partial(sender, transfer);
      if (row && row.size !== offer.size) {
        this.service.dropPartial(row);
        row = null;
      }
      const refusal = this.service.makeRoom(sender, transfer, offer.size, Math.max(offer.size, FILE_OVERHEAD) - (row ? Math.max(row.size, FILE_OVERHEAD) : 0));
      if (refusal) return this.refuse(refusal.code, refusal.message);
      if (!row) {
        const file = createHash("sha256").update(`${sender}\n${transfer}`).digest("hex").slice(0, 40) + ".part";
        db.addPartial({ sender, transfer, file, name: offer.name, size: offer.size, boot: BOOT_ID, now: Date.now() });
        row = db.partial(sender, transfer)!;
      }
      this.row = row;
      const path = this.service.partialPath(row.file);
      let fh: FileHandle;
      try {
        fh = await open(path, "r+");
      } catch {
        fh = await open(path, "w+", 0o600);
      }
      this.fh = fh;
      await fh.chmod(0o600);
      const size = (await fh.stat()).size;
      // What counts: everything in the file if the machine has not restarted since it was written (a
      // killed process loses nothing the kernel already took); after a reboot only what was fsynced.
      const kept = row.boot !== null && row.boot === BOOT_ID ? size : row.durable;
      const durable = Math.min(kept, size, offer.size);
      if (size !== durable) await fh.truncate(durable);
      await this.hashPrefix(durable);
      if (this.failed || connection.isClosed) return await this.closeFile();
      this.received = this.written = this.durable = this.resumedFrom = durable;
      this.base = { ref: transfer, direction: "in", peer: sender, name: offer.name, size: offer.size, bytes: durable, resumed_from: durable, started_at: new Date().toISOString() };
      connection.send({ kind: "file_accept", transfer: offer.transfer, offset: durable });
      connection.resume();
    } catch (e) {
      this.context.log.warn("cannot take a file", { from: sender, error: (e as Error).message });
      this.refuse(ExchangeError.Internal, "the receiver could not store the file; retry later");
      await this.closeFile();
    }
  }

  /** Hashes the first `bytes` of the partial file (resuming). */
  private async hashPrefix(bytes: number): Promise<void> {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let at = 0; at < bytes; ) {
      const { bytesRead } = await this.fh!.read(buf, 0, Math.min(buf.length, bytes - at), at);
      if (bytesRead === 0) throw new Error("the partial file is shorter than its record");
      this.hasher.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
  }

  private onFrame(f: ExchangeFrame): void {
    if (this.failed) return;
    if (f.kind === "file_data") {
      if (this.endSha) return this.refuse(ExchangeError.BadFrame, "file data after file_end");
      if (this.received + f.data.length > this.offer.size) return this.refuse(ExchangeError.BadFrame, "more file data than the offered size");
      this.hasher.update(f.data);
      this.received += f.data.length;
      this.pending.push(f.data);
      if (this.service.writeBehind.add(this, f.data.length)) this.connection.pause();
      void this.writeLoop();
    } else if (f.kind === "file_end") {
      if (this.endSha) return this.refuse(ExchangeError.BadFrame, "a second file_end");
      if (this.received !== this.offer.size) return this.refuse(ExchangeError.BadFrame, `file_end after ${this.received} of ${this.offer.size} bytes`);
      this.endSha = f.sha256;
      void this.writeLoop();
    } else {
      this.refuse(ExchangeError.BadFrame, `${f.kind} does not belong on a files stream`);
    }
  }

  private async writeLoop(): Promise<void> {
    if (this.writing || !this.fh) return;
    this.writing = true;
    try {
      while (this.pending.length > 0 && !this.failed) {
        const batch = this.pending.splice(0);
        const bytes = batch.reduce((n, b) => n + b.length, 0);
        let done = 0;
        while (done < bytes) {
          const { bytesWritten } = await this.fh.writev(done === 0 ? batch : sliceFrom(batch, done), this.written);
          this.written += bytesWritten;
          done += bytesWritten;
        }
        for (const t of this.service.writeBehind.remove(this, bytes)) t.resumeReading();
        if (!this.syncing && (this.written - this.durable >= CHECKPOINT_BYTES || Date.now() - this.lastCheckpoint >= CHECKPOINT_MS)) void this.checkpoint().catch(() => {});
      }
    } catch (e) {
      this.context.log.warn("cannot write a received file", { from: this.sender, error: (e as Error).message });
      this.refuse(ExchangeError.Internal, "the receiver could not write the file (disk full?)");
    } finally {
      this.writing = false;
    }
    if (!this.failed && this.pending.length > 0) return void this.writeLoop();
    for (const fn of this.idleWaiters.splice(0)) fn();
    if (!this.failed && !this.closing && this.endSha && !this.finishing && this.written === this.offer.size) void this.finish();
  }

  /** Resolves once nothing is being written (and, unless failed, nothing waits to be). */
  private whenIdle(): Promise<void> {
    if (!this.writing && (this.failed || this.pending.length === 0)) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** fsyncs what is written so far and records it: a resume starts there. Runs beside further writes. */
  private checkpoint(): Promise<void> {
    if (this.syncing) return this.syncing;
    const upTo = this.written;
    this.lastCheckpoint = Date.now();
    this.syncing = (async () => {
      try {
        await this.fh!.datasync();
        if (upTo > this.durable) {
          this.durable = upTo;
          this.store(upTo);
        }
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  private store(durable: number): void {
    try {
      this.db.setDurable(this.sender, this.transfer, durable, BOOT_ID, Date.now());
    } catch {
      // the service is stopping: the next resume starts from the last recorded offset
    }
  }

  private async finish(): Promise<void> {
    this.finishing = true;
    const { connection, offer } = this;
    try {
      const sha = this.hasher.digest();
      if (!Buffer.from(this.endSha!).equals(sha)) {
        this.failed = true;
        await this.closeFile();
        this.service.dropPartial(this.row!);
        connection.refuse(ExchangeError.ChecksumMismatch, "the file's SHA-256 does not match what arrived (did it change while it was sent?); send it again", offer.transfer);
        return;
      }
      const syncStart = Date.now();
      while (this.syncing) await this.syncing;
      await this.fh!.datasync();
      const fsyncMs = Date.now() - syncStart;
      await this.closeFile();
      const name = this.link();
      fsyncDir(this.service.receivedDir);
      rmSync(this.service.partialPath(this.row!.file), { force: true });
      const shaHex = sha.toString("hex");
      this.db.complete({ sender: this.sender, transfer: this.transfer, name, bytes: offer.size, sha256: shaHex, now: Date.now() });
      this.base = null;
      const path = join(this.service.receivedDir, name);
      this.context.events.publish("file.received", { from: this.sender, name, bytes: offer.size, sha256: shaHex, path });
      this.context.log.info("file received", { from: this.sender, name, bytes: offer.size, resumed_from: this.resumedFrom, fsync_ms: fsyncMs, seconds: (Date.now() - this.startedAt) / 1000 });
      connection.send({ kind: "file_done", transfer: offer.transfer, sha256: sha, size: offer.size, name });
      connection.end();
    } catch (e) {
      this.context.log.warn("cannot finish a received file", { from: this.sender, error: (e as Error).message });
      this.refuse(ExchangeError.Internal, "the receiver could not store the file; send it again");
      await this.closeFile();
    }
  }

  /** Hard-links the partial file into received/ under a free sanitised name (never replacing a file). */
  private link(): string {
    const base = sanitizeFileName(this.offer.name);
    const from = this.service.partialPath(this.row!.file);
    for (let n = 0; n < 10_000; n++) {
      const name = n < 1000 ? withSuffix(base, n) : withSuffix(base, Number.parseInt(randomUUID().slice(0, 8), 16));
      if (this.db.nameTaken(name)) continue;
      try {
        linkSync(from, join(this.service.receivedDir, name));
        return name;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
    }
    throw new Error("no free name in received/");
  }

  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await fh.close().catch(() => {});
    this.settle();
  }

  /** The stream ended without file_done: write what arrived, fsync it and record it for a resume. */
  private async closed(): Promise<void> {
    if (this.finishing || this.closing || this.beginning) return;
    this.closing = true;
    this.base = null;
    if (!this.fh) return this.settle();
    try {
      await this.whenIdle();
      while (this.syncing) await this.syncing;
      if (!this.failed && this.written > this.durable) await this.checkpoint();
    } catch {
      // the next resume starts from the last recorded offset
    }
    await this.closeFile();
  }

  /** The write-behind has room for this transfer again (WriteBehind said so): its stream reads on. */
  resumeReading(): void {
    if (!this.closing && !this.failed) this.connection.resume();
  }

  abort(): void {
    this.connection.abort();
  }
}

/**
 * Sends one file, resuming from what the receiver holds; within one call it
 * redials after a failure until no progress was made for `timeoutMs`.
 */
class OutgoingTransfer {
  position = 0;

  constructor(
    private readonly context: ServiceContext,
    private readonly fh: FileHandle,
    private readonly address: Address,
    private readonly target: string,
    private readonly transfer: Uint8Array,
    private readonly name: string,
    private readonly size: number,
    private readonly timeoutMs: number,
  ) {}

  async run(): Promise<{ name: string; sha256: string; resumedFrom: number }> {
    let lastProgress = Date.now();
    let resumedFrom: number | null = null;
    let mismatches = 0;
    for (let attempt = 0; ; attempt++) {
      const before = this.position;
      try {
        const r = await this.attempt((offset) => (resumedFrom ??= offset));
        return { ...r, resumedFrom: resumedFrom ?? 0 };
      } catch (e) {
        const err = e instanceof NodeError ? e : new NodeError("internal", (e as Error).message);
        if (this.position > before) lastProgress = Date.now();
        if ((err as NodeError & { mismatch?: boolean }).mismatch && ++mismatches > 1) throw err;
        if ((err as NodeError & { permanent?: boolean }).permanent) throw err;
        if (Date.now() - lastProgress >= this.timeoutMs) throw new NodeError(err.code, err.message, `send it again with the same command: it resumes from what ${this.target} has stored`);
        await Bun.sleep(Math.min(5_000, 250 * 2 ** Math.min(attempt, 5), Math.max(0, this.timeoutMs - (Date.now() - lastProgress))));
      }
    }
  }

  private async attempt(onAccept: (offset: number) => void): Promise<{ name: string; sha256: string }> {
    const stream = await this.context.dial(this.address, WellKnownPort.DataExchange, { timeoutMs: Math.min(this.timeoutMs, 15_000) });
    const connection = new ExchangeConnection(stream);
    try {
      connection.send({ kind: "file_offer", transfer: this.transfer, size: this.size, name: this.name });
      const answer = await connection.receive(this.timeoutMs);
      if (answer.kind === "error") throw refusal(answer.code, answer.message, this.target);
      const hasher = createHash("sha256");
      if (answer.kind === "file_done") {
        // Finished on an earlier try; check it is this file's content.
        await this.hashRange(hasher, 0, this.size);
        const sha = hasher.digest();
        if (!sha.equals(Buffer.from(answer.sha256))) throw permanent(new NodeError("internal", `${this.target} holds a different file under this transfer (it changed since); rename it or touch it and send again`));
        this.position = this.size;
        onAccept(this.size);
        return { name: answer.name, sha256: sha.toString("hex") };
      }
      if (answer.kind !== "file_accept" || answer.offset > this.size) throw new NodeError("internal", `unexpected answer ${answer.kind} to a file offer`);
      onAccept(answer.offset);
      await this.hashRange(hasher, 0, answer.offset);
      this.position = answer.offset;
      await this.stream(connection, hasher);
      const sha = hasher.digest();
      connection.send({ kind: "file_end", sha256: sha });
      const done = await connection.receive(Math.max(this.timeoutMs, DONE_TIMEOUT_MS));
      if (done.kind === "error") throw refusal(done.code, done.message, this.target);
      if (done.kind !== "file_done" || !Buffer.from(done.sha256).equals(sha) || done.size !== this.size) throw new NodeError("internal", `unexpected answer ${done.kind} to file_end`);
      return { name: done.name, sha256: sha.toString("hex") };
    } finally {
      connection.close();
    }
  }

  private async hashRange(hasher: ReturnType<typeof createHash>, from: number, to: number): Promise<void> {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let at = from; at < to; ) {
      const { bytesRead } = await this.fh.read(buf, 0, Math.min(buf.length, to - at), at);
      if (bytesRead === 0) throw permanent(new NodeError("invalid_argument", "the file became shorter while it was being sent"));
      hasher.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
  }

  /**
   * Reads from `position` to the end in blocks of READ_BLOCK bytes, READ_AHEAD
   * blocks ahead (one thread-pool read per block, not per frame), and sends
   * them as file_data frames of EXCHANGE_CHUNK bytes, waiting for the stream
   * when its queue is full. Each block is read straight into its frames'
   * bodies (one readv into [kind][data] buffers), so data is not copied to
   * encode it.
   */
  private async stream(connection: ExchangeConnection, hasher: ReturnType<typeof createHash>): Promise<void> {
    const read = async (at: number): Promise<Uint8Array[]> => {
      const frames: Uint8Array[] = [];
      const end = Math.min(this.size, at + READ_BLOCK);
      for (let p = at; p < end; p += EXCHANGE_CHUNK) {
        frames.push(fileDataFrameBody(Math.min(EXCHANGE_CHUNK, end - p)));
      }
      let views = frames.map((f) => f.subarray(1));
      let pos = at;
      while (views.length > 0) {
        const { bytesRead } = await this.fh.readv(views, pos);
        if (bytesRead === 0) throw permanent(new NodeError("invalid_argument", "the file became shorter while it was being sent"));
        pos += bytesRead;
        views = sliceFrom(views, bytesRead);
      }
      return frames;
    };
    const ahead: Promise<Uint8Array[]>[] = [];
    let readAt = this.position;
    const fill = () => {
      while (ahead.length < READ_AHEAD && readAt < this.size) {
        const p = read(readAt);
        p.catch(() => {});
        ahead.push(p);
        readAt = Math.min(this.size, readAt + READ_BLOCK);
      }
    };
    fill();
    while (ahead.length > 0) {
      const frames = await ahead.shift()!;
      fill();
      for (const body of frames) {
        const data = body.subarray(1);
        hasher.update(data);
        if (connection.isClosed) throw new NodeError("connection_reset", `${this.target} closed the transfer`);
        if (!connection.sendBody(body)) await this.drained(connection);
        this.position += data.length;
      }
    }
  }

  private async drained(connection: ExchangeConnection): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NodeError("timeout", `${this.target} took nothing for ${Math.round(this.timeoutMs / 1000)} s`)), this.timeoutMs);
    });
    try {
      await Promise.race([connection.drained(), stalled]);
    } finally {
      clearTimeout(timer);
    }
    if (connection.isClosed) throw new NodeError("connection_reset", `${this.target} closed the transfer`);
  }
}

/** The transfer id: the same file (path, inode, size, mtime) under the same name gets the same id, so it resumes. */
function transferId(path: string, st: Stats, name: string): Uint8Array {
  const h = createHash("sha256").update(`pilot-file-transfer-v1\n${path}\n${st.dev}:${st.ino}\n${st.size}\n${st.mtimeMs}\n${name}`).digest();
  return new Uint8Array(h.subarray(0, 16));
}

function permanent(e: NodeError): NodeError {
  (e as NodeError & { permanent?: boolean }).permanent = true;
  return e;
}

/** A receiver's refusal as the sender's error; refusals that retrying cannot change are permanent. */
function refusal(code: string, message: string, target: string): NodeError {
  const table: Record<string, [NodeErrorCode, boolean, string | undefined]> = {
    [ExchangeError.QuotaExceeded]: ["quota_exceeded", true, `${target} must remove files it received from you before it takes more`],
    [ExchangeError.TooLarge]: ["too_large", true, undefined],
    [ExchangeError.NotTrusted]: ["not_trusted", true, `${target} takes files only from nodes it trusts: ask with pilot handshake ${target} "why"`],
    [ExchangeError.ServiceDisabled]: ["connection_refused", true, `${target} runs with its files service switched off`],
    [ExchangeError.Busy]: ["limit_exceeded", false, undefined],
    [ExchangeError.Timeout]: ["timeout", false, undefined],
    [ExchangeError.ChecksumMismatch]: ["internal", false, undefined],
  };
  const [nodeCode, isPermanent, hint] = table[code] ?? ["internal", true, undefined];
  const e = new NodeError(nodeCode, `${target} refused the file: ${message}`, hint);
  if (code === ExchangeError.ChecksumMismatch) (e as NodeError & { mismatch?: boolean }).mismatch = true;
  return isPermanent ? permanent(e) : e;
}

function fileOpenError(e: unknown, path: string): NodeError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new NodeError("not_found", `no file ${path}`);
  if (code === "EACCES" || code === "EPERM") return new NodeError("unauthorized", `the daemon may not read ${path}`, "the daemon reads the file itself: it must be readable by the daemon's user");
  if (code === "EISDIR") return new NodeError("invalid_argument", `${path} is a directory`, "send a directory as an archive: tar czf dir.tgz dir");
  return new NodeError("invalid_argument", `cannot open ${path}: ${(e as Error).message}`);
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // some filesystems refuse fsync on a directory; the link is still in place
  }
}

/** The buffers of `batch` from byte `from` on. */
function sliceFrom(batch: Uint8Array[], from: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = from;
  for (const b of batch) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

function str(p: Params, k: string): string {
  const v = p[k];
  if (typeof v !== "string" || v === "") throw new NodeError("invalid_argument", `"${k}" must be a non-empty string`);
  return v;
}

function int(p: Params, k: string, min: number, max: number): number {
  const v = p[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new NodeError("invalid_argument", `"${k}" must be a whole number from ${min} to ${max}`);
  return v;
}
