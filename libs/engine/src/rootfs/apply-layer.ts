import { constants as C } from 'node:fs';
import * as fsc from 'node:fs';
import { mkdir, readdir, realpath, rm } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';
import { MonocoreError } from '../errors/index.js';
import type { EntryMeta, ErofsWriter } from './erofs-writer.js';
import { decompress, openLayerFile } from './layer-source.js';
import type { LayerCompression } from './layer-compression.js';
import { RootResolveError, RootResolver } from './root-resolver.js';
import { TarXattrScanner, type Xattrs } from './tar-xattrs.js';
import { libc } from './libc.js';
import { TurnBudget } from './turn-budget.js';
import { UnpackSession } from './unpack-session.js';

export interface ApplyLayerOptions {
  /** Layer digest (or a label) named in every error and progress event. */
  layer?: string;
  /** Declared media type (file sources): decides the decompressor, and the magic bytes must agree. */
  mediaType?: string;
  /** Without mediaType: 'auto' sniffs a file's magic bytes (default for files); streams default to 'none'. */
  compression?: LayerCompression | 'auto';
  /** Share deferred directory metadata and ownership records across the layers of one image. When given, the caller calls session.finish(). */
  session?: UnpackSession;
  /** Give entries their uid/gid with lchown (default: when running as root). */
  chown?: boolean;
  /** Compressed bytes read so far (file sources). */
  onBytes?: (total: number) => void;
  /** Large files (over 1 MiB) written in the background at once (default 16). */
  concurrency?: number;
  /** zstd decoder: the `zstd` CLI (default when on PATH) or the pure-JS fzstd. */
  zstdImpl?: 'cli' | 'fzstd';
  /** Stops the unpack (in-flight writes finish first); rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Also write every file body into this block image, as it is written to the tree (erofs-writer.ts). */
  blockImage?: ErofsWriter;
}

export interface ApplyLayerStats {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  whiteouts: number;
  devices: number;
  /** Extended attributes set (file capabilities, user.*). */
  xattrs: number;
  /** Regular-file bytes written. */
  bytes: number;
}

/**
 * Files up to this size are read into memory and written with synchronous
 * syscalls; larger ones stream through the thread pool. Why: on these hosts a
 * thread-pool round trip (a futex wake each way) costs more than the syscall it
 * carries, and a layer is mostly small files and directories. Metadata calls
 * (mkdir, lstat, symlink, link) are synchronous for the same reason. The event
 * loop still turns between the decompressor's chunks (≤ 1 MiB of tar each) and,
 * within a chunk, whenever the entries have run TURN_BUDGET_MS without a turn
 * (turn-budget.ts): a chunk of small files is ~1,000 entries, which on a loaded host
 * held the event loop for seconds, past the worker's lease fence. Measured in
 * bench/RESULTS.md ("rootfs unpack, synchronous metadata"): 2.65 s → 1.45 s for
 * 199 MB / 8,900 entries; "liveness under load" for the turns.
 */
const SMALL_FILE = 1 << 20;
/**
 * A chunk reaches the tar parser in slices of this size, the event loop turning between
 * them when the budget is spent: parsing 1 MiB of small files' headers is 10-40 ms of
 * its own on an idle host (1,000 entries), a quarter of it 3-10 ms. Not smaller: a large
 * file's body reaches its writes in pieces no bigger than a slice, and 64 KiB slices
 * made a 200 MB cold pull ~8 % slower (bench/RESULTS.md "liveness under load").
 */
const PARSE_SLICE = 256 << 10;
const OPEN_NEW = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
const MAX_ID = 0xfffffffe;
/** EOPNOTSUPP on Linux: the filesystem keeps no extended attributes. */
const ENOTSUP = 95;

/**
 * Applies one layer (a tar, possibly compressed) onto `targetDir` with OCI
 * semantics, containing everything inside `targetDir` (see docs/THREATS.md,
 * "Untrusted layers"):
 * - names are cleaned (leading '/' dropped: absolute names are contained);
 *   any `..` component in a name or hardlink target rejects the layer
 *   (MC_ROOTFS_PATH_ESCAPE);
 * - parent directories are resolved by us, symlinks followed with the root as
 *   `/` (RootResolver), so `a -> /etc` then `a/passwd` writes `<root>/etc/passwd`;
 * - the final component is never followed: files are created with
 *   O_CREAT|O_EXCL|O_NOFOLLOW after removing what was there (lstat), symlinks
 *   are stored as-is, hardlinks point at an lstat'ed file inside the root;
 * - device nodes and FIFOs are recorded in the session, never created.
 */
export async function applyLayer(source: string | Readable, targetDir: string, options: ApplyLayerOptions = {}): Promise<ApplyLayerStats> {
  const layer = options.layer ?? (typeof source === 'string' ? source : 'stream');
  await mkdir(targetDir, { recursive: true });
  const root = await realpath(resolvePath(targetDir));
  let tar: Readable;
  if (typeof source === 'string') {
    tar = (await openLayerFile(source, {
      layer,
      ...(options.mediaType !== undefined ? { mediaType: options.mediaType } : {}),
      ...(options.compression !== undefined ? { compression: options.compression } : {}),
      ...(options.onBytes ? { onBytes: options.onBytes } : {}),
      ...(options.zstdImpl ? { zstdImpl: options.zstdImpl } : {}),
    })).tar;
  } else {
    // A stream opened ahead of time may already have failed (its error was held, not lost).
    if (source.errored) throw source.errored;
    const c = options.compression ?? 'none';
    if (c === 'auto') throw new MonocoreError('MC_ROOTFS_INVALID_ARGUMENT', `layer ${layer}: compression "auto" needs a file source`, { layer });
    tar = c === 'none' ? source : decompress(source, c, layer, options.zstdImpl);
  }
  const session = options.session ?? new UnpackSession(root, options.chown !== undefined ? { chown: options.chown } : {});
  const applier = new LayerApplier(root, layer, session, options.concurrency ?? 16, options.blockImage);
  await applier.run(tar, options.signal);
  if (!options.session) await session.finish();
  return applier.stats;
}

/** The signal's reason when it is an Error (e.g. the puller's own abort error), else an AbortError naming the layer. */
function abortReason(signal: AbortSignal, layer: string): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error && r.name !== 'AbortError') return r;
  const e = new Error(`layer ${layer}: unpack aborted`);
  e.name = 'AbortError';
  return e;
}

class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }
  release(): void {
    const w = this.waiters.shift();
    if (w) w();
    else this.free++;
  }
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

class LayerApplier {
  readonly stats: ApplyLayerStats = { entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, whiteouts: 0, devices: 0, xattrs: 0, bytes: 0 };
  private readonly resolver: RootResolver;
  /** Real paths this layer created, plus their ancestors: an opaque whiteout keeps these. */
  private readonly created = new Set<string>();
  private readonly slots: Slots;
  private readonly xattrScanner = new TarXattrScanner();
  /** Entries are applied with synchronous syscalls: the event loop gets a turn every TURN_BUDGET_MS. */
  private readonly budget = new TurnBudget();
  private readonly jobs = new Set<Promise<void>>();
  private failure: MonocoreError | Error | undefined;
  /** Aborted on the first failure: wakes an entry waiting for body bytes that will never come. */
  private readonly abortCtl = new AbortController();
  /** The caller's abort reason: passed through as is, not wrapped. */
  private abortErr: Error | undefined;
  private markDone!: () => void;
  private readonly done = new Promise<void>((r) => (this.markDone = r));
  private abort(): void {
    this.abortCtl.abort();
  }

  constructor(
    private readonly root: string,
    private readonly layer: string,
    private readonly session: UnpackSession,
    concurrency: number,
    private readonly block?: ErofsWriter,
  ) {
    this.resolver = new RootResolver(root, (rel) => {
      this.block?.created(rel);
      this.markCreated(rel);
      this.session.setImplicitDir(rel);
    });
    this.slots = new Slots(Math.max(1, concurrency));
  }

  run(tar: Readable, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // Not strict: an archive of only zero blocks (Docker's empty layer) is valid
      // for us but "unrecognized" for the parser; every other warning fails below.
      const parser = new Parser({});
      let chain: Promise<void> = Promise.resolve();
      let current = '';
      let sawEntry = false;
      let total = 0;
      let nonZero = false;
      let settled = false;
      /** The chunk being handed to the parser (the stream is paused meanwhile). */
      let feeding: Promise<void> = Promise.resolve();

      const settle = async (): Promise<void> => {
        if (settled) return;
        settled = true;
        await chain.catch(() => undefined);
        while (this.jobs.size > 0) await Promise.allSettled([...this.jobs]);
        this.markDone();
        if (this.failure) reject(this.failure);
        else resolve();
      };
      const fail = (err: unknown, entry = current): void => {
        if (!this.failure) {
          this.failure = this.wrap(err, entry);
          this.abort();
          tar.unpipe();
          tar.destroy();
        }
        void settle();
      };

      parser.on('entry', (e: ReadEntry) => {
        sawEntry = true;
        const xattrs = this.xattrScanner.shift(); // taken now: entries arrive in archive order
        chain = chain.then(async () => {
          const turn = this.budget.turn();
          if (turn) await turn;
          if (this.failure) {
            e.resume();
            return;
          }
          current = e.path;
          await this.entry(e, xattrs);
        }).catch((err) => {
          e.resume();
          fail(err, e.path);
        });
      });
      parser.on('ignoredEntry', (e: ReadEntry) => {
        this.xattrScanner.shift();
        const why = e.meta ? `an extended header larger than 1 MiB` : `unsupported entry type "${e.type}"`;
        fail(new MonocoreError('MC_ROOTFS_BAD_LAYER', `layer ${this.layer} entry "${e.path}": ${why}`, { layer: this.layer, entry: e.path, type: e.type }), e.path);
      });
      parser.on('warn', (code: string, message: string) => {
        if (code === 'TAR_BAD_ARCHIVE' && /Unrecognized archive format/.test(message) && !sawEntry && !nonZero) return;
        fail(new MonocoreError('MC_ROOTFS_BAD_LAYER', `layer ${this.layer}: invalid tar${current ? ` after entry "${current}"` : ''}: ${code} ${message}`, { layer: this.layer, entry: current, tarCode: code }));
      });
      parser.on('error', (err: Error) => fail(err));
      parser.on('end', () => {
        chain = chain.then(() => {
          if (!sawEntry && nonZero) throw new MonocoreError('MC_ROOTFS_BAD_LAYER', `layer ${this.layer}: not a tar archive`, { layer: this.layer });
        });
        chain.catch((err) => fail(err, '')).finally(() => void settle());
      });

      tar.on('data', (chunk: Buffer) => {
        this.budget.restart(); // a turn of its own
        if (this.failure) return;
        if (total === 0 && chunk.length >= 2) {
          // The parser would silently gunzip/unzstd a nested stream: a layer must decompress to a tar.
          if ((chunk[0] === 0x1f && chunk[1] === 0x8b) || (chunk[0] === 0x28 && chunk[1] === 0xb5 && chunk[2] === 0x2f && chunk[3] === 0xfd)) {
            fail(new MonocoreError('MC_ROOTFS_BAD_LAYER', `layer ${this.layer}: the (decompressed) layer is compressed again, not a tar`, { layer: this.layer }), '');
            return;
          }
        }
        if (!nonZero && total < (1 << 20)) nonZero = chunk.some((b) => b !== 0);
        total += chunk.length;
        // One chunk per turn of the event loop: entries are written with
        // synchronous syscalls, and a stream with a full buffer would otherwise
        // hand over all of it (16 MiB of small files) before timers run again.
        // Within the chunk, the parser gets it in slices and the entries' chain
        // lets the event loop turn whenever the budget is spent.
        tar.pause();
        feeding = feed(chunk).then(
          () => {
            if (!this.failure) setImmediate(() => tar.resume());
          },
          (err) => fail(err, current),
        );
      });
      const feed = async (chunk: Buffer): Promise<void> => {
        for (let off = 0; off < chunk.length && !this.failure; off += PARSE_SLICE) {
          if (off > 0) {
            const turn = this.budget.turn();
            if (turn) await turn;
            if (this.failure) return;
          }
          const slice = chunk.subarray(off, off + PARSE_SLICE);
          this.xattrScanner.push(slice); // before the parser: its entry events take from the scanner's queue
          if (!parser.write(slice)) await new Promise<void>((resolve) => parser.once('drain', resolve));
        }
      };
      tar.on('end', () => {
        // The stream may end while its last chunk is still being fed.
        void feeding.then(() => {
          if (!this.failure) parser.end();
        });
      });
      tar.on('error', (err) => fail(err, current));
      if (signal) {
        const onAbort = (): void => {
          this.abortErr = abortReason(signal, this.layer);
          fail(this.abortErr, current);
        };
        if (signal.aborted) onAbort();
        else {
          signal.addEventListener('abort', onAbort, { once: true });
          const off = (): void => signal.removeEventListener('abort', onAbort);
          void this.done.then(off, off);
        }
      }
    });
  }

  private wrap(err: unknown, entry: string): MonocoreError | Error {
    const details = { layer: this.layer, entry };
    const where = entry ? `layer ${this.layer} entry "${entry}"` : `layer ${this.layer}`;
    if (err instanceof MonocoreError || (err !== undefined && err === this.abortErr)) return err as Error;
    if (err instanceof RootResolveError) return new MonocoreError('MC_ROOTFS_BAD_LAYER', `${where}: ${err.message}`, details, { cause: err });
    const code = errnoOf(err);
    const msg = (err as Error)?.message ?? String(err);
    // Errors the layer's content causes (a name too long for the host): retrying cannot help.
    if (code === 'ENAMETOOLONG') return new MonocoreError('MC_ROOTFS_BAD_LAYER', `${where}: ${msg}`, { ...details, errno: code }, { cause: err });
    return new MonocoreError('MC_ROOTFS_UNPACK_FAILED', `${where}: ${msg}`, { ...details, ...(code ? { errno: code } : {}) }, { cause: err });
  }

  private escape(entry: string, why: string): MonocoreError {
    return new MonocoreError('MC_ROOTFS_PATH_ESCAPE', `layer ${this.layer} entry "${entry}": ${why}`, { layer: this.layer, entry });
  }

  private bad(entry: string, why: string): MonocoreError {
    return new MonocoreError('MC_ROOTFS_BAD_LAYER', `layer ${this.layer} entry "${entry}": ${why}`, { layer: this.layer, entry });
  }

  /** Cleans a tar name: drops '', '.' and leading '/' (contained); rejects '..'. */
  private parts(name: string, what: string, entry = name): string[] {
    const parts = name.split('/').filter((c) => c !== '' && c !== '.');
    if (parts.includes('..')) throw this.escape(entry, `${what} contains a ".." component`);
    return parts;
  }

  private markCreated(rel: string): void {
    let k = rel;
    while (k !== '' && !this.created.has(k)) {
      this.created.add(k);
      const i = k.lastIndexOf('/');
      k = i < 0 ? '' : k.slice(0, i);
    }
  }

  private ids(e: ReadEntry): { uid: number; gid: number } {
    const uid = e.uid ?? 0;
    const gid = e.gid ?? 0;
    if (!Number.isInteger(uid) || uid < 0 || uid > MAX_ID || !Number.isInteger(gid) || gid < 0 || gid > MAX_ID) {
      throw this.bad(e.path, `invalid uid/gid ${String(e.uid)}/${String(e.gid)}`);
    }
    return { uid, gid };
  }

  private times(e: ReadEntry): { atime: Date; mtime: Date } | undefined {
    const m = e.mtime;
    if (!(m instanceof Date) || Number.isNaN(m.getTime())) return undefined;
    const a = e.atime instanceof Date && !Number.isNaN(e.atime.getTime()) ? e.atime : m;
    return { atime: a, mtime: m };
  }

  private async entry(e: ReadEntry, xattrs?: Xattrs): Promise<void> {
    this.stats.entries++;
    const parts = this.parts(e.path, 'name');
    const base = parts[parts.length - 1];
    if (base !== undefined && base.startsWith('.wh.')) {
      e.resume();
      await this.whiteout(e.path, parts.slice(0, -1), base);
      return;
    }
    switch (e.type) {
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        await this.file(e, parts, xattrs);
        return;
      case 'Directory':
      case 'GNUDumpDir':
        e.resume();
        await this.dir(e, parts, xattrs);
        return;
      case 'SymbolicLink':
        e.resume();
        await this.symlink(e, parts);
        return;
      case 'Link':
        e.resume();
        await this.hardlink(e, parts);
        return;
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO':
        e.resume();
        await this.device(e, parts);
        return;
      default:
        throw this.bad(e.path, `unsupported entry type "${String(e.type)}"`);
    }
  }

  private async parentOf(name: string, parts: string[]): Promise<string[]> {
    if (parts.length === 0) throw this.bad(name, 'the entry names the root directory but is not a directory');
    return (await this.resolver.resolveDir(parts.slice(0, -1), true)) as string[];
  }

  /**
   * Removes whatever is at `rel` (never following it). Returns false when a
   * directory is there and keepDir is set.
   */
  private async removeExisting(rel: string[], keepDir = false): Promise<boolean> {
    const abs = this.resolver.abs(rel);
    const key = rel.join('/');
    let st;
    try {
      st = fsc.lstatSync(abs);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw err;
      // Nothing on disk, but a recorded device node may live at this path.
      this.session.forget(key, false);
      return true;
    }
    if (st.isDirectory()) {
      if (keepDir) return false;
      await rm(abs, { recursive: true, force: true });
      this.resolver.invalidate();
      this.session.forget(key, true);
      return true;
    }
    fsc.unlinkSync(abs);
    if (st.isSymbolicLink()) this.resolver.invalidate();
    this.session.forget(key, false);
    return true;
  }

  private async file(e: ReadEntry, parts: string[], xattrs?: Xattrs): Promise<void> {
    const parent = await this.parentOf(e.path, parts);
    const rel = [...parent, parts[parts.length - 1] as string];
    const key = rel.join('/');
    const abs = this.resolver.abs(rel);
    const { uid, gid } = this.ids(e);
    const mode = (e.mode ?? 0o644) & 0o7777;
    const t = this.times(e);
    const size = e.size ?? 0;
    // Owner, mode and times go through the descriptor, never the path. chown
    // before chmod: chown clears setuid/setgid.
    const chowned = this.session.needsChown(uid, gid);
    const meta: FdMeta = {
      ...(chowned ? { uid, gid } : {}),
      ...(this.session.needsChmod(mode, chowned) ? { mode } : {}),
      ...(t ? { atime: t.atime, mtime: t.mtime } : {}),
    };
    if (size <= SMALL_FILE) {
      // Small files: the body is already in memory once the parser has it, and
      // the syscalls are made synchronously (see SMALL_FILE).
      const chunks = await this.readBody(e);
      let fd: number;
      try {
        fd = fsc.openSync(abs, OPEN_NEW, mode & 0o777);
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        await this.removeExisting(rel);
        fd = fsc.openSync(abs, OPEN_NEW, mode & 0o777);
      }
      this.fileCreated(key, uid, gid, size);
      finishFdSync(fd, chunks, meta);
      this.block?.fileData(key, chunks, size, blockMeta(mode, uid, gid, t));
      // After the data and the chown: writing or chowning a file clears its security.capability.
      if (xattrs) this.setXattrs(e.path, key, abs, xattrs);
      return;
    }
    await this.slots.acquire();
    let fd: number;
    try {
      try {
        fd = await openNew(abs, mode & 0o777);
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        await this.removeExisting(rel);
        fd = await openNew(abs, mode & 0o777);
      }
    } catch (err) {
      this.slots.release();
      throw err;
    }
    this.fileCreated(key, uid, gid, size);
    const done = (): void => this.slots.release();
    const toBlock = this.block?.bigFile(key, size, blockMeta(mode, uid, gid, t));
    try {
      await this.streamBody(e, fd, toBlock);
    } catch (err) {
      fsc.close(fd, done);
      throw err;
    }
    this.background(finishFd(fd, [], meta).then(() => xattrs && this.setXattrs(e.path, key, abs, xattrs)).finally(done));
  }

  /** Book-keeping for a regular file just created at `key`. */
  private fileCreated(key: string, uid: number, gid: number, size: number): void {
    this.markCreated(key);
    this.session.forget(key, false);
    this.session.setOwner(key, uid, gid);
    this.stats.files++;
    this.stats.bytes += size;
  }

  private background(p: Promise<void>): void {
    const job: Promise<void> = p.catch((err) => {
      if (!this.failure) {
        this.failure = this.wrap(err, '');
        this.abort();
      }
    }).finally(() => this.jobs.delete(job));
    this.jobs.add(job);
  }

  /**
   * Runs `body` until it settles or the layer fails. The abort listener is
   * removed afterwards: a listener left on a long-lived signal would keep every
   * file's bytes reachable until the layer ends.
   */
  private untilAbort<T>(body: (resolve: (v: T) => void, reject: (err: unknown) => void) => void): Promise<T> {
    const signal = this.abortCtl.signal;
    if (signal.aborted) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(this.failure);
      signal.addEventListener('abort', onAbort, { once: true });
      body(
        (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
        (err) => { signal.removeEventListener('abort', onAbort); reject(err); },
      );
    });
  }

  private readBody(e: ReadEntry): Promise<Buffer[]> {
    return this.untilAbort<Buffer[]>((resolve) => {
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () => resolve(chunks));
    });
  }

  /**
   * Streams a big file's body into `fd`, one write at a time (the entry is paused
   * while a write is in flight). Settles only once no write is in flight, so the
   * caller can close `fd` without a queued write landing in a reused descriptor.
   */
  private streamBody(e: ReadEntry, fd: number, toBlock?: (chunk: Buffer, offset: number) => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const signal = this.abortCtl.signal;
      let pending: Promise<void> = Promise.resolve();
      let writeErr: unknown;
      let settled = false;
      const settle = (): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', settle);
        void pending.then(() => {
          const err = writeErr ?? (signal.aborted ? this.failure : undefined);
          if (err) reject(err);
          else resolve();
        });
      };
      if (signal.aborted) return settle();
      signal.addEventListener('abort', settle, { once: true });
      let offset = 0;
      e.on('data', (c: Buffer) => {
        e.pause();
        const at = offset;
        offset += c.length;
        pending = pending
          .then(() => (writeErr || signal.aborted ? undefined : toBlock ? Promise.all([writeAll(fd, [c]), toBlock(c, at)]).then(() => undefined) : writeAll(fd, [c])))
          .then(
            () => { if (!writeErr && !signal.aborted) e.resume(); },
            (err) => { writeErr ??= err; settle(); },
          );
      });
      e.on('end', settle);
    });
  }

  private async dir(e: ReadEntry, parts: string[], xattrs?: Xattrs): Promise<void> {
    let rel: string[];
    if (parts.length === 0) {
      rel = [];
    } else {
      const parent = await this.resolver.resolveDir(parts.slice(0, -1), true) as string[];
      rel = [...parent, parts[parts.length - 1] as string];
      const abs = this.resolver.abs(rel);
      try {
        // 0700 while filling; the entry's own mode is applied at the end (session.finish).
        fsc.mkdirSync(abs, { mode: 0o700 });
        this.block?.created(rel.join('/'));
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        if (await this.removeExisting(rel, true)) {
          fsc.mkdirSync(abs, { mode: 0o700 });
          this.block?.created(rel.join('/'));
        }
      }
    }
    const key = rel.join('/');
    const { uid, gid } = this.ids(e);
    const t = this.times(e);
    this.markCreated(key);
    this.session.setDir(key, { mode: (e.mode ?? 0o755) & 0o7777, uid, gid, ...(t ?? {}) });
    this.session.setOwner(key, uid, gid);
    this.stats.dirs++;
    if (xattrs) this.setXattrs(e.path, key, this.resolver.abs(rel), xattrs, true);
  }

  /**
   * Applies the entry's extended attributes that mean something for a guest:
   * `security.capability` (file capabilities; root only, like chown) and
   * `user.*`. Others (trusted.*, security.selinux, ACLs) are the host's
   * business and are skipped. A filesystem without xattr support skips them.
   * `abs` is built from real directories and the final component is never
   * followed (lsetxattr).
   */
  private setXattrs(entry: string, key: string, abs: string, xattrs: Xattrs, isDir = false): void {
    const set = libc().lsetxattr;
    for (const [name, value] of xattrs) {
      if (name === 'security.capability') {
        if (isDir) continue;
        // Recorded for the guest whatever happens here (see ownership-record.ts).
        this.session.setCapability(key, value);
        if (!this.session.chown) continue;
      } else if (!name.startsWith('user.')) {
        continue;
      }
      if (!set) return;
      if (set(abs, name, value, value.length, 0) === 0) {
        this.stats.xattrs++;
        this.block?.xattr(key, name, value, isDir);
        continue;
      }
      const errno = libc().errno();
      if (errno === ENOTSUP) return;
      throw this.bad(entry, `cannot set extended attribute ${name} (errno ${errno})`);
    }
  }

  private async symlink(e: ReadEntry, parts: string[]): Promise<void> {
    const target = e.linkpath ?? '';
    const parent = await this.parentOf(e.path, parts);
    const rel = [...parent, parts[parts.length - 1] as string];
    const key = rel.join('/');
    const abs = this.resolver.abs(rel);
    const { uid, gid } = this.ids(e);
    try {
      fsc.symlinkSync(target, abs);
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw err;
      await this.removeExisting(rel);
      fsc.symlinkSync(target, abs);
    }
    this.markCreated(key);
    this.session.forget(key, false);
    if (this.session.chown) fsc.lchownSync(abs, uid, gid);
    this.session.setOwner(key, uid, gid);
    const t = this.times(e);
    this.block?.symlink(key, target, { uid, gid, mtimeMs: t ? t.mtime.getTime() : Date.now() });
    if (t) fsc.lutimesSync(abs, t.atime, t.mtime);
    this.stats.symlinks++;
  }

  private async hardlink(e: ReadEntry, parts: string[]): Promise<void> {
    const linkParts = this.parts(e.linkpath ?? '', `hardlink target "${e.linkpath ?? ''}"`, e.path);
    if (linkParts.length === 0) throw this.bad(e.path, 'hardlink to the root directory');
    const targetDir = await this.resolver.resolveDir(linkParts.slice(0, -1), false);
    const targetRel = targetDir ? [...targetDir, linkParts[linkParts.length - 1] as string] : undefined;
    const targetAbs = targetRel ? this.resolver.abs(targetRel) : undefined;
    const st = targetAbs ? fsc.lstatSync(targetAbs, { throwIfNoEntry: false }) : undefined;
    if (!targetAbs || !targetRel || !st) throw this.bad(e.path, `hardlink target "${e.linkpath ?? ''}" does not exist in the rootfs`);
    if (st.isDirectory()) throw this.bad(e.path, `hardlink target "${e.linkpath ?? ''}" is a directory`);
    const parent = await this.parentOf(e.path, parts);
    const rel = [...parent, parts[parts.length - 1] as string];
    const key = rel.join('/');
    const abs = this.resolver.abs(rel);
    if (abs === targetAbs) return;
    // link(2) on Linux never follows a symlink given as the target: a link to a
    // symlink is a second name for that symlink, still resolved inside the guest.
    try {
      fsc.linkSync(targetAbs, abs);
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw err;
      await this.removeExisting(rel);
      fsc.linkSync(targetAbs, abs);
    }
    this.block?.link(key, targetRel.join('/'));
    this.markCreated(key);
    this.session.forget(key, false);
    const { uid, gid } = this.ids(e);
    this.session.setOwner(key, uid, gid);
    this.stats.hardlinks++;
  }

  private async device(e: ReadEntry, parts: string[]): Promise<void> {
    const parent = await this.parentOf(e.path, parts);
    const rel = [...parent, parts[parts.length - 1] as string];
    const key = rel.join('/');
    await this.removeExisting(rel);
    const { uid, gid } = this.ids(e);
    this.markCreated(key);
    this.session.setDevice({
      path: key,
      type: e.type === 'FIFO' ? 'fifo' : e.type === 'BlockDevice' ? 'block' : 'char',
      major: e.header.devmaj ?? 0,
      minor: e.header.devmin ?? 0,
      mode: (e.mode ?? 0o600) & 0o7777,
      uid,
      gid,
    });
    this.stats.devices++;
  }

  private async whiteout(name: string, dirParts: string[], base: string): Promise<void> {
    this.stats.whiteouts++;
    if (base === '.wh..wh..opq') {
      const dir = await this.resolver.resolveDir(dirParts, true) as string[];
      await this.clearLower(dir);
      return;
    }
    if (base.startsWith('.wh..wh.')) return; // AUFS bookkeeping (.wh..wh.plnk …): nothing to apply
    const victim = base.slice('.wh.'.length);
    if (victim === '..') throw this.escape(name, 'whiteout of ".." would delete outside its directory');
    if (victim === '' || victim === '.') throw this.bad(name, 'whiteout names no file');
    const dir = await this.resolver.resolveDir(dirParts, false);
    if (!dir) return; // nothing below to hide
    const rel = [...dir, victim];
    // A whiteout hides lower layers only, never an entry of its own layer.
    if (this.created.has(rel.join('/'))) return;
    await this.removeExisting(rel);
  }

  /** Opaque directory: remove what lower layers put in `dir`, keep this layer's entries. */
  private async clearLower(dir: string[]): Promise<void> {
    const abs = this.resolver.abs(dir);
    let names: string[];
    try {
      names = await readdir(abs);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return;
      throw err;
    }
    for (const n of names) {
      const rel = [...dir, n];
      if (this.created.has(rel.join('/'))) {
        const st = fsc.lstatSync(this.resolver.abs(rel));
        if (st.isDirectory()) await this.clearLower(rel);
      } else {
        await this.removeExisting(rel);
      }
    }
  }
}

/** What the block image records for a new file: what the tree gets (mtime now when the entry has none). */
function blockMeta(mode: number, uid: number, gid: number, t: { mtime: Date } | undefined): EntryMeta {
  return { mode, uid, gid, mtimeMs: t ? t.mtime.getTime() : Date.now() };
}

/*
 * Large files go through the callback fs API on raw descriptors: the promise
 * FileHandle API costs about 2.5x the main-thread CPU per call.
 */
function openNew(path: string, mode: number): Promise<number> {
  return new Promise((resolve, reject) => fsc.open(path, OPEN_NEW, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** What is left of `bufs` after a (partial) writev of `written` bytes. */
function unwritten(bufs: Buffer[], written: number): Buffer[] {
  let n = written;
  const rest: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    rest.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return rest;
}

function writeAll(fd: number, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let bufs = chunks;
    const step = (): void => {
      if (bufs.length === 0) return resolve();
      fsc.writev(fd, bufs, (err, written) => {
        if (err) return reject(err);
        const rest = unwritten(bufs, written);
        if (written === 0 && rest.length > 0) return reject(new Error('write returned 0 bytes'));
        bufs = rest;
        step();
      });
    };
    step();
  });
}

interface FdMeta {
  uid?: number;
  gid?: number;
  mode?: number;
  atime?: Date;
  mtime?: Date;
}

/** finishFd with synchronous syscalls: writes, owner → mode → times, close (always). */
function finishFdSync(fd: number, chunks: Buffer[], m: FdMeta): void {
  try {
    let bufs = chunks;
    while (bufs.length > 0) {
      const n = fsc.writevSync(fd, bufs);
      if (n === 0) throw new Error('write returned 0 bytes');
      bufs = unwritten(bufs, n);
    }
    if (m.uid !== undefined && m.gid !== undefined) fsc.fchownSync(fd, m.uid, m.gid);
    if (m.mode !== undefined) fsc.fchmodSync(fd, m.mode);
    if (m.mtime) fsc.futimesSync(fd, m.atime ?? m.mtime, m.mtime);
  } finally {
    fsc.closeSync(fd);
  }
}

/** Writes the body, applies owner → mode → times through the descriptor, and closes it (always). */
function finishFd(fd: number, chunks: Buffer[], m: FdMeta): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => fsc.close(fd, () => reject(err));
    const times = (): void => {
      if (!m.mtime) return fsc.close(fd, (err) => (err ? reject(err) : resolve()));
      fsc.futimes(fd, m.atime ?? m.mtime, m.mtime, (err) => (err ? fail(err) : fsc.close(fd, (e2) => (e2 ? reject(e2) : resolve()))));
    };
    const mode = (): void => {
      if (m.mode === undefined) return times();
      fsc.fchmod(fd, m.mode, (err) => (err ? fail(err) : times()));
    };
    const owner = (): void => {
      if (m.uid === undefined || m.gid === undefined) return mode();
      fsc.fchown(fd, m.uid, m.gid, (err) => (err ? fail(err) : mode()));
    };
    if (chunks.length === 0) return owner();
    writeAll(fd, chunks).then(owner, fail);
  });
}
