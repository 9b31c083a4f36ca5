import { createHash, randomBytes, type Hash } from 'node:crypto';
import { constants as fsc, createReadStream } from 'node:fs';
import { chmod, link, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import type { BlobInfo, ContentStore, EnsureBlobOptions, IngestWriter } from './content-store.js';
import { assertDigest, digestHex, verifyBytes } from './digest.js';

/**
 * Blobs on the local filesystem, laid out like containerd's local store:
 *
 *   oci/blobs/sha256/<hex>        committed, read-only (0444), never rewritten
 *   oci/ingest/<hex>/data         bytes of an in-flight download (resumable)
 *   oci/ingest/<hex>/lock         the writer's lock: created with O_EXCL, holds pid+host
 *
 * One writer per digest across processes: the lock file is created exclusively
 * (`open(..., 'wx')`) and its mtime is refreshed every few seconds while held.
 * A lock is stale when its pid is dead on this host or its mtime has not moved
 * for LOCK_STALE_MS (a frozen or foreign holder); a waiter then breaks it.
 * A blob becomes visible only by rename() after its size and sha256 were checked,
 * so readers never see uncommitted bytes, and a crash leaves at most an ingest
 * that the next writer resumes (re-hashing the bytes already on disk).
 */

const LOCK_HEARTBEAT_MS = 2_000;
const LOCK_STALE_MS = 30_000;
/** A waiter gives up after this long without the lock and without progress of the holder. */
const LOCK_WAIT_IDLE_MS = 5 * 60_000;
/** Bytes buffered before a write(2): large enough for throughput, small enough that a kill loses little. */
const WRITE_BATCH = 256 << 10;

/** In-process coalescing: one fill per blob path, whatever store instance asked. */
const inflight = new Map<string, Promise<BlobInfo>>();

export class LocalContentStore implements ContentStore {
  readonly blobsDir: string;
  readonly ingestDir: string;

  constructor(home: MonocoreHome) {
    this.blobsDir = join(home.blobsDir, 'sha256');
    this.ingestDir = home.ingestDir;
  }

  path(digest: string): string {
    return join(this.blobsDir, digestHex(assertDigest(digest, 'blob digest')));
  }

  async info(digest: string): Promise<BlobInfo | undefined> {
    const path = this.path(digest);
    try {
      const st = await stat(path);
      return st.isFile() ? { digest, size: st.size, path } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async read(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.path(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new MonocoreError('MC_OCI_BLOB_NOT_FOUND', `blob ${digest} is not in the local content store`, { digest });
      }
      throw err;
    }
  }

  async put(digest: string, data: Uint8Array, expectedSize?: number): Promise<BlobInfo> {
    const existing = await this.info(digest);
    if (existing) return existing;
    verifyBytes(digest, data, expectedSize, 'blob');
    // Identical content: concurrent writers race harmlessly on rename, no lock needed.
    await mkdir(this.blobsDir, { recursive: true });
    const tmp = join(this.blobsDir, `.tmp-${digestHex(digest)}-${randomBytes(6).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o444);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path(digest));
    await syncDir(this.blobsDir);
    return { digest, size: data.byteLength, path: this.path(digest) };
  }

  async openWriter(digest: string, expectedSize: number, options: EnsureBlobOptions = {}): Promise<IngestWriter | undefined> {
    assertDigest(digest, 'blob digest');
    const hex = digestHex(digest);
    const dir = join(this.ingestDir, hex);
    const lockPath = join(dir, 'lock');
    const dataPath = join(dir, 'data');
    let delay = 10;
    let lastProgressAt = Date.now();
    let lastSize = -1;
    for (;;) {
      options.signal?.throwIfAborted();
      if (await this.info(digest)) return undefined;
      await mkdir(dir, { recursive: true });
      const lock = await tryCreateLock(lockPath);
      if (lock) {
        // Someone may have committed between our check and the lock.
        if (await this.info(digest)) {
          await lock.release();
          return undefined;
        }
        try {
          return await LocalIngestWriter.open(this, digest, expectedSize, dataPath, dir, lock);
        } catch (err) {
          await lock.release();
          throw err;
        }
      }
      // Held by someone else: break it if stale, else wait (reporting their progress).
      if (await breakIfStale(lockPath)) continue;
      const size = await fileSize(dataPath);
      if (size !== lastSize) {
        lastSize = size;
        lastProgressAt = Date.now();
        if (size > 0) options.onWaitProgress?.(size);
      } else if (Date.now() - lastProgressAt > LOCK_WAIT_IDLE_MS) {
        throw new MonocoreError('MC_OCI_STORE_BUSY', `blob ${digest}: another writer holds ${lockPath} and made no progress for ${LOCK_WAIT_IDLE_MS / 1000} s`, {
          digest,
          lockPath,
        });
      }
      await sleep(delay, undefined, options.signal ? { signal: options.signal } : undefined);
      delay = Math.min(delay * 2, 250);
    }
  }

  async ensure(digest: string, expectedSize: number, fill: (writer: IngestWriter) => Promise<void>, options: EnsureBlobOptions = {}): Promise<BlobInfo> {
    const existing = await this.info(digest);
    if (existing) return checkCommittedSize(existing, expectedSize);
    const key = this.path(digest);
    const running = inflight.get(key);
    if (running) return running;
    const p = (async () => {
      const writer = await this.openWriter(digest, expectedSize, options);
      if (!writer) {
        const info = await this.info(digest);
        if (!info) throw new MonocoreError('MC_INTERNAL', `blob ${digest} vanished right after another writer committed it`, { digest });
        return checkCommittedSize(info, expectedSize);
      }
      try {
        await fill(writer);
        return await writer.commit();
      } catch (err) {
        // Keep partial bytes for a resume; commit() already deleted bad data.
        await writer.close();
        throw err;
      }
    })();
    inflight.set(key, p);
    try {
      return await p;
    } finally {
      inflight.delete(key);
    }
  }

  async delete(digest: string): Promise<boolean> {
    try {
      await unlink(this.path(digest));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async list(): Promise<BlobInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.blobsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: BlobInfo[] = [];
    for (const name of names) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      const path = join(this.blobsDir, name);
      const st = await stat(path).catch(() => undefined);
      if (st?.isFile()) out.push({ digest: `sha256:${name}`, size: st.size, path });
    }
    return out;
  }

  /** Called by a writer once its data is verified: publish by rename. */
  async publish(digest: string, dataPath: string): Promise<BlobInfo> {
    await mkdir(this.blobsDir, { recursive: true });
    const path = this.path(digest);
    await chmod(dataPath, 0o444);
    await rename(dataPath, path);
    await syncDir(this.blobsDir);
    const st = await stat(path);
    return { digest, size: st.size, path };
  }
}

function checkCommittedSize(info: BlobInfo, expectedSize: number): BlobInfo {
  if (info.size !== expectedSize) {
    throw new MonocoreError(
      'MC_OCI_SIZE_MISMATCH',
      `blob ${info.digest}: the descriptor says ${expectedSize} bytes but the stored blob with this digest has ${info.size}`,
      { digest: info.digest, expected: expectedSize, actual: info.size },
    );
  }
  return info;
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY).catch(() => undefined);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    await fh.close();
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

interface HeldLock {
  release(): Promise<void>;
}

async function tryCreateLock(lockPath: string): Promise<HeldLock | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(lockPath, 'wx', 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOENT') return undefined; // ENOENT: dir removed by a committer; retry
    throw err;
  }
  try {
    await fh.writeFile(JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
  } finally {
    await fh.close();
  }
  const timer = setInterval(() => {
    const now = new Date();
    utimes(lockPath, now, now).catch(() => undefined);
  }, LOCK_HEARTBEAT_MS);
  timer.unref();
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await unlink(lockPath).catch(() => undefined);
    },
  };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Breaks the lock at `lockPath` if its holder is gone. Returns true when the
 * caller should retry acquiring at once. The lock is moved aside by rename, then
 * its content re-checked, so a fresh lock taken by a third party in between is
 * put back (link fails harmlessly if yet another lock appeared).
 */
async function breakIfStale(lockPath: string): Promise<boolean> {
  let raw: string;
  let mtimeMs: number;
  try {
    raw = await readFile(lockPath, 'utf8');
    mtimeMs = (await stat(lockPath)).mtimeMs;
  } catch {
    return true; // gone already
  }
  let holder: { pid?: number; host?: string } = {};
  try {
    holder = JSON.parse(raw) as typeof holder;
  } catch {
    // A holder crashed between create and write: judge by age only.
  }
  const age = Date.now() - mtimeMs;
  const deadHere = holder.host === hostname() && typeof holder.pid === 'number' && !pidAlive(holder.pid);
  const frozen = age > LOCK_STALE_MS;
  if (!deadHere && !frozen && raw !== '') return false;
  if (raw === '' && age < 2_000) return false; // being written right now
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch {
    return true;
  }
  const movedRaw = await readFile(aside, 'utf8').catch(() => '');
  if (movedRaw !== raw) await link(aside, lockPath).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
  return true;
}

class LocalIngestWriter implements IngestWriter {
  private hash: Hash;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written: number;
  private done = false;

  private constructor(
    private readonly store: LocalContentStore,
    readonly digest: string,
    readonly expectedSize: number,
    private readonly dataPath: string,
    private readonly dir: string,
    private readonly lock: HeldLock,
    private fh: FileHandle,
    hash: Hash,
    existing: number,
  ) {
    this.hash = hash;
    this.written = existing;
  }

  static async open(
    store: LocalContentStore,
    digest: string,
    expectedSize: number,
    dataPath: string,
    dir: string,
    lock: HeldLock,
  ): Promise<LocalIngestWriter> {
    let existing = await fileSize(dataPath);
    const hash = createHash('sha256');
    if (existing > expectedSize) existing = 0;
    if (existing > 0) {
      // Resume: the hash state is not persisted, so re-hash what is on disk.
      for await (const chunk of createReadStream(dataPath, { end: existing - 1 })) hash.update(chunk as Buffer);
    }
    const fh = await open(dataPath, existing > 0 ? 'r+' : 'w', 0o644);
    if (existing > 0) await fh.truncate(existing);
    return new LocalIngestWriter(store, digest, expectedSize, dataPath, dir, lock, fh, hash, existing);
  }

  get offset(): number {
    return this.written + this.pendingBytes;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new Error('ingest writer already finished');
    if (this.offset + chunk.byteLength > this.expectedSize) {
      const actual = this.offset + chunk.byteLength;
      await this.abort();
      throw new MonocoreError(
        'MC_OCI_SIZE_MISMATCH',
        `blob ${this.digest}: received more than the ${this.expectedSize} bytes its descriptor declares (at least ${actual}); it was not stored`,
        { digest: this.digest, expected: this.expectedSize, actual },
      );
    }
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.hash.update(buf);
    this.pending.push(buf);
    this.pendingBytes += buf.byteLength;
    if (this.pendingBytes >= WRITE_BATCH) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    let chunks = this.pending;
    const total = this.pendingBytes;
    this.pending = [];
    let at = this.written;
    this.written += total;
    this.pendingBytes = 0;
    // writev: no copy into one buffer; loop on short writes.
    let left = total;
    while (left > 0) {
      const { bytesWritten } = await this.fh.writev(chunks, at);
      at += bytesWritten;
      left -= bytesWritten;
      if (left === 0) break;
      let skip = bytesWritten;
      const rest: Buffer[] = [];
      for (const c of chunks) {
        if (skip >= c.byteLength) {
          skip -= c.byteLength;
          continue;
        }
        rest.push(skip > 0 ? c.subarray(skip) : c);
        skip = 0;
      }
      chunks = rest;
    }
  }

  async reset(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    this.written = 0;
    this.hash = createHash('sha256');
    await this.fh.truncate(0);
  }

  async commit(): Promise<BlobInfo> {
    await this.flush();
    const size = this.written;
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (size !== this.expectedSize) {
      await this.abort();
      throw new MonocoreError(
        'MC_OCI_SIZE_MISMATCH',
        `blob ${this.digest}: expected ${this.expectedSize} bytes, got ${size}; it was not stored`,
        { digest: this.digest, expected: this.expectedSize, actual: size },
      );
    }
    if (actual !== this.digest) {
      await this.abort();
      throw new MonocoreError('MC_OCI_DIGEST_MISMATCH', `blob ${this.digest}: content hashes to ${actual}; it was not stored`, {
        digest: this.digest,
        actual,
      });
    }
    await this.fh.sync();
    await this.fh.close();
    this.done = true;
    try {
      return await this.store.publish(this.digest, this.dataPath);
    } finally {
      await this.lock.release();
      await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.flush();
      await this.fh.sync();
    } catch {
      // The partial data may be incomplete; the next writer re-hashes and resumes what is there.
    }
    await this.fh.close().catch(() => undefined);
    await this.lock.release();
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => undefined);
    await rm(this.dataPath, { force: true }).catch(() => undefined);
    await this.lock.release();
    // Only if empty: a waiter may already have taken the lock in it.
    await rmdir(this.dir).catch(() => undefined);
  }
}
