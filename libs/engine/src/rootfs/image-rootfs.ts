import { chmod, lstat, mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { applyLayer } from './apply-layer.js';
import { ErofsWriter } from './erofs-writer.js';
import { BLOCK_DIR, BLOCK_FILE } from './block-format.js';
import { BOOT_ID_FILE, SYNCED_MARKER, currentBootId } from './commit-marker.js';
import { openLayerFile } from './layer-source.js';
import { syncFilesystem, syncInBackground } from './sync-filesystem.js';
import { HostLock } from './host-lock.js';
import { layerCompression } from './layer-compression.js';
import { OWNERSHIP_FILE } from './ownership-record.js';
import { UnpackSession } from './unpack-session.js';
import { DIGEST_RE, imageHex, imageRootfsComplete, removeTree, type ImageRootfs } from './image-rootfs-dir.js';

export { imageRootfsComplete, imageRootfsDir, imageRootfsPath, readOwnershipRecord, removeTree, type ImageRootfs } from './image-rootfs-dir.js';

/**
 * One read-only rootfs per image, by manifest digest:
 *
 *   rootfs/images/<hex>/rootfs/           the unpacked root filesystem
 *   rootfs/images/<hex>/ownership.json    what could not go on the host (ownership-record.ts)
 *   rootfs/images/.tmp-<hex>-<pid>-<rnd>/ an unpack in progress (same filesystem: atomic rename)
 *   rootfs/images/.locks/<hex>.lock       flock(2) lock serialising unpacks of one image on this host
 *
 * `<hex>/` only ever appears through one rename(2) of a fully unpacked temp
 * dir, so its existence means "complete": a killed unpack leaves only a
 * `.tmp-*` dir, which the next unpack of that image (holding its lock) removes.
 */
export interface ImageLayerInput {
  digest: string;
  mediaType: string;
  size: number;
  /** Path of the committed (verified) blob file. */
  path: string;
  /**
   * Optional: resolves when the blob at `path` is committed. Lets a puller call
   * ensureImageRootfs while layers still download, so layer 1 is unpacked while
   * layer 2 downloads (layers are applied in order; each waits for its own
   * promise). A rejection aborts the unpack with that error.
   */
  ready?: Promise<unknown>;
}

export interface UnpackProgress {
  /** 1-based index of the layer being applied. */
  layer: number;
  layers: number;
  digest: string;
  /** Compressed bytes of this layer read so far. */
  bytes?: number;
}

export interface EnsureImageRootfsOptions {
  home: MonocoreHome;
  /** Manifest digest "sha256:…". */
  imageId: string;
  layers: ImageLayerInput[];
  onProgress?: (e: UnpackProgress) => void;
  /** How long to wait for another process unpacking the same image (default 30 min). */
  lockTimeoutMs?: number;
  /** Aborts the unpack (the temp dir is removed); rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called once if another process is unpacking this image and we wait for it (holder: "pid iso-date"). */
  onLockWait?: (holder: string) => void;
  /**
   * Also build the image's block image (image-block.ts) in the same pass: file bodies go
   * into the erofs as they are unpacked, and it is committed with the rootfs, by the same
   * rename (docs/OCI.md "Block images").
   */
  blockImage?: boolean;
  /** Called when the last layer is applied and the block image's metadata is being written (blockImage). */
  onBlockFinish?: () => void;
}

const inProcess = new Map<string, Promise<ImageRootfs>>();

/**
 * Makes sure the image's rootfs is unpacked and returns its path. Idempotent
 * (returns at once when complete), safe across processes of one host (flock per
 * image: a second caller waits, then finds it complete), and crash-safe.
 */
export function ensureImageRootfs(opts: EnsureImageRootfsOptions): Promise<ImageRootfs> {
  let hex: string;
  try {
    hex = imageHex(opts.imageId);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  const key = `${opts.home.root}\0${hex}`;
  const running = inProcess.get(key);
  const signal = opts.signal;
  if (running) return signal ? raceAbort(running, signal) : running;
  // A call that can be aborted does not become the shared one: its abort must
  // not fail the other callers (they wait on the flock and then find it done).
  if (signal) return ensure(opts, hex);
  const p = ensure(opts, hex).finally(() => inProcess.delete(key));
  inProcess.set(key, p);
  return p;
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e as Error); },
    );
  });
}

async function ensure(opts: EnsureImageRootfsOptions, hex: string): Promise<ImageRootfs> {
  const { home, imageId, layers } = opts;
  // Mark every `ready` promise handled now: one may reject while an earlier layer unpacks.
  for (const l of layers ?? []) l?.ready?.catch(() => undefined);
  const done = await imageRootfsComplete(home, imageId);
  if (done) return done;
  validateLayers(layers);

  const base = home.imageRootfsDir;
  const locks = join(base, '.locks');
  await mkdir(locks, { recursive: true });
  const lock = await HostLock.acquire(join(locks, `${hex}.lock`), {
    ...(opts.lockTimeoutMs !== undefined ? { timeoutMs: opts.lockTimeoutMs } : {}),
    ...(opts.onLockWait ? { onWait: opts.onLockWait } : {}),
  });
  try {
    const again = await imageRootfsComplete(home, imageId);
    if (again) return again;
    await removeStaleTemps(base, hex);
    const finalDir = join(base, hex);
    // A <hex> dir without a readable record is not ours to trust (e.g. a
    // hand-made or half-removed copy): move it out of the way.
    if (await exists(finalDir)) await removeTree(await moveAside(base, hex, finalDir));

    const tmp = join(base, `.tmp-${hex}-${process.pid}-${randomBytes(4).toString('hex')}`);
    const rootfs = join(tmp, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    // Images carry setuid-root binaries and world-writable dirs meant for the
    // guest: no other host user may even reach them (docs/THREATS.md).
    await chmod(tmp, 0o700);
    // mkdir/mkdtemp give 0700; an image without a "./" entry still needs a usable root.
    await chmod(rootfs, 0o755);
    let block: ErofsWriter | undefined;
    try {
      // chmod cleared any setgid inherited from above: new files get our euid/egid.
      const session = new UnpackSession(rootfs, { freshTree: true });
      if (opts.blockImage) {
        await mkdir(join(tmp, BLOCK_DIR), { mode: 0o755 });
        block = new ErofsWriter(join(tmp, BLOCK_DIR, BLOCK_FILE));
      }
      const n = layers.length;
      let current = 0;
      const progress = opts.onProgress;
      // Layer i+1 is opened (and its decompressor started) as soon as layer i
      // begins, so its decompressed bytes are ready when the parser gets to it:
      // the main thread writing files and the decompressor then overlap across
      // layer boundaries too (bench/RESULTS.md, "oci").
      const open = async (i: number): Promise<Readable> => {
        const l = layers[i] as ImageLayerInput;
        if (l.ready) await l.ready;
        opts.signal?.throwIfAborted();
        let last = 0;
        const src = await openLayerFile(l.path, {
          layer: l.digest,
          mediaType: l.mediaType,
          ...(progress
            ? {
                onBytes: (b: number) => {
                  const now = Date.now();
                  if (current === i + 1 && now - last >= 100) {
                    last = now;
                    progress({ layer: i + 1, layers: n, digest: l.digest, bytes: b });
                  }
                },
              }
            : {}),
        });
        // Held until applyLayer takes the stream: it reads `errored` first.
        src.tar.on('error', () => undefined);
        return src.tar;
      };
      let next: Promise<Readable> | undefined = n > 0 ? open(0) : undefined;
      const started = performance.now();
      let waited = 0;
      try {
        for (const [i, l] of layers.entries()) {
          const waitFrom = performance.now();
          const tar = await (next as Promise<Readable>);
          waited += performance.now() - waitFrom;
          next = i + 1 < n ? open(i + 1) : undefined;
          next?.catch(() => undefined); // surfaces when its turn comes
          current = i + 1;
          progress?.({ layer: i + 1, layers: n, digest: l.digest, bytes: 0 });
          await applyLayer(tar, rootfs, { layer: l.digest, compression: 'none', session, ...(opts.signal ? { signal: opts.signal } : {}), ...(block ? { blockImage: block } : {}) });
          progress?.({ layer: i + 1, layers: n, digest: l.digest, bytes: l.size });
        }
      } finally {
        // A failed layer: stop the decompressor already working on the next one.
        void next?.then((t) => t.destroy(), () => undefined);
      }
      await session.finish();
      const record = session.record(imageId);
      let blockSeconds: number | undefined;
      if (block) {
        // After session.finish: directories have their modes and times.
        const t0 = performance.now();
        opts.onBlockFinish?.();
        await block.finish(rootfs, { allRoot: record.ownershipRecorded });
        blockSeconds = (performance.now() - t0) / 1000;
      }
      await writeFile(join(tmp, OWNERSHIP_FILE), JSON.stringify(record) + '\n', { mode: 0o644 });
      const bootId = currentBootId();
      // The nonce ties the `synced` marker to this commit, not to an earlier tree at the same path.
      const nonce = randomBytes(8).toString('hex');
      if (bootId) {
        await writeFile(join(tmp, BOOT_ID_FILE), `${bootId} ${nonce}\n`, { mode: 0o644 });
        await writeFile(join(tmp, SYNCED_MARKER), '', { mode: 0o644 }); // filled once synced
        if (block) {
          // The block dir carries its own markers (image-block.ts reads them there).
          await writeFile(join(tmp, BLOCK_DIR, BOOT_ID_FILE), `${bootId} ${nonce}\n`, { mode: 0o644 });
          await writeFile(join(tmp, BLOCK_DIR, SYNCED_MARKER), '', { mode: 0o644 });
        }
      } else {
        // Without a boot id to tell a reboot apart, the data goes to disk before the commit.
        await syncFilesystem(tmp);
      }
      // The commit point: before this rename nothing calls the image unpacked.
      await rename(tmp, finalDir);
      if (bootId) {
        // Usable at once (the page cache has it); on disk a little later. Until the
        // marker holds this commit's nonce, complete() trusts the tree only within this boot.
        syncInBackground(finalDir, join(finalDir, SYNCED_MARKER), nonce, block ? [join(finalDir, BLOCK_DIR, SYNCED_MARKER)] : []);
      }
      return {
        rootfs: join(finalDir, 'rootfs'),
        ownershipRecorded: record.ownershipRecorded,
        unpackSeconds: (performance.now() - started - waited) / 1000 - (blockSeconds ?? 0),
        ...(blockSeconds !== undefined ? { blockSeconds } : {}),
      };
    } catch (err) {
      await block?.abandon().catch(() => undefined);
      await removeTree(tmp).catch(() => undefined);
      throw err;
    }
  } finally {
    await lock.release();
  }
}

function validateLayers(layers: ImageLayerInput[]): void {
  if (!Array.isArray(layers)) throw new MonocoreError('MC_ROOTFS_INVALID_ARGUMENT', 'layers must be an array', {});
  layers.forEach((l, i) => {
    if (!l || typeof l.digest !== 'string' || !DIGEST_RE.test(l.digest)) {
      throw new MonocoreError('MC_ROOTFS_INVALID_ARGUMENT', `layers[${i}].digest: "${String(l?.digest)}" is not a sha256 digest`, { index: i });
    }
    if (typeof l.path !== 'string' || l.path === '') {
      throw new MonocoreError('MC_ROOTFS_INVALID_ARGUMENT', `layers[${i}].path: a blob file path is required`, { index: i, layer: l.digest });
    }
    layerCompression(l.mediaType, l.digest);
  });
}

/**
 * Removes the image's rootfs. It is first renamed away (one atomic step: no
 * reader ever sees a half-removed tree at the final path), then deleted.
 * Returns false when there was nothing to remove.
 */
export async function removeImageRootfs(home: MonocoreHome, imageId: string): Promise<boolean> {
  const hex = imageHex(imageId);
  const base = home.imageRootfsDir;
  const finalDir = join(base, hex);
  if (!(await exists(finalDir))) return false;
  const locks = join(base, '.locks');
  await mkdir(locks, { recursive: true });
  const lock = await HostLock.acquire(join(locks, `${hex}.lock`));
  try {
    if (!(await exists(finalDir))) return false;
    const aside = await moveAside(base, hex, finalDir);
    await removeTree(aside);
    return true;
  } finally {
    await lock.release();
  }
}

async function moveAside(base: string, hex: string, dir: string): Promise<string> {
  const aside = join(base, `.tmp-${hex}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await rename(dir, aside);
  return aside;
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

/**
 * Leftovers of unpacks that died (SIGKILL, power loss): `.tmp-<hex>-*` for
 * this image are ours to delete because we hold its lock. Leftovers of other
 * images are deleted only if their lock is free right now.
 */
async function removeStaleTemps(base: string, hex: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\.tmp-([a-f0-9]{64})-/.exec(n);
    if (!m) continue;
    if (m[1] === hex) {
      await removeTree(join(base, n));
      continue;
    }
    const other = await HostLock.tryAcquire(join(base, '.locks', `${m[1]}.lock`)).catch(() => undefined);
    if (!other) continue;
    try {
      await removeTree(join(base, n));
    } finally {
      await other.release();
    }
  }
}

/**
 * Deletes leftovers of killed unpacks/removals (`.tmp-*` dirs) whose image is not
 * being unpacked right now (its lock is free). For `image prune`; unpacks also do
 * this on their own. Returns how many were removed.
 */
export async function cleanupRootfsTemps(home: MonocoreHome): Promise<number> {
  const base = home.imageRootfsDir;
  const before = await readdir(base).catch(() => [] as string[]);
  await mkdir(join(base, '.locks'), { recursive: true }).catch(() => undefined);
  await removeStaleTemps(base, '');
  const after = await readdir(base).catch(() => [] as string[]);
  return before.filter((n) => n.startsWith('.tmp-')).length - after.filter((n) => n.startsWith('.tmp-')).length;
}

