import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { isDigest } from './digest.js';
import { parseImageReference } from './image-reference.js';
import { imageRootfsIdsInUse } from '../rootfs/rootfs-in-use.js';
import { LocalContentStore } from './local-content-store.js';
import { checkImageRecord, type ImageRecord } from './image-record.js';
import type { ImageConfig, ImageManifest } from './manifest.js';
import { runtimeConfig } from './runtime-config.js';

export type { ImageRecord } from './image-record.js';

/**
 * The record of an image just made available, from its manifest and config:
 * one place for what a pull and an import both store.
 */
export function newImageRecord(from: {
  reference: string;
  platform: string;
  /** What the reference resolved to (an index or the manifest itself). */
  digest: string;
  manifestDigest: string;
  manifestMediaType: string;
  manifest: ImageManifest;
  config: ImageConfig;
  rootfs: string;
  /** Blobs besides the layers that the record keeps alive (manifests, config). */
  kept: readonly string[];
  source: ImageRecord['source'];
}): ImageRecord {
  const { manifest, config } = from;
  const rec: ImageRecord = {
    reference: from.reference,
    platform: from.platform,
    digest: from.digest,
    manifestDigest: from.manifestDigest,
    manifestMediaType: from.manifestMediaType,
    configDigest: manifest.config.digest,
    config: runtimeConfig(config),
    layers: manifest.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size })),
    size: manifest.layers.reduce((a, l) => a + l.size, 0),
    rootfs: from.rootfs,
    blobs: [...new Set([...from.kept, ...manifest.layers.map((l) => l.digest)])],
    pulledAt: new Date().toISOString(),
    source: from.source,
  };
  if (config.created) rec.created = config.created;
  return rec;
}

export interface PruneResult {
  removedBlobs: string[];
  removedRootfs: string[];
  /** Unreferenced rootfs dirs kept because a running VM (a live process) uses them; the next prune after it stops removes them. */
  keptInUse: string[];
  freedBytes: number;
}

export interface PruneOptions {
  /** Removes one image rootfs directory by image id (default: the rootfs domain's removeImageRootfs). */
  removeRootfs?: (imageId: string) => Promise<void>;
  /** Lists image ids that have a rootfs on disk (default: the directories under rootfs/images). */
  listRootfs?: () => Promise<string[]>;
  /** Image ids whose rootfs running VMs use (default: imageRootfsIdsInUse, from /proc). */
  rootfsInUse?: () => Promise<Set<string>>;
}

function recordKey(reference: string, platform: string): string {
  return createHash('sha256').update(`${reference}\n${platform}`).digest('hex');
}

export class ImageStore {
  private readonly dir: string;
  private readonly leasesDir: string;

  constructor(readonly home: MonocoreHome) {
    this.dir = home.imagesDir;
    this.leasesDir = home.leasesDir;
  }

  async put(record: ImageRecord): Promise<void> {
    const checked = checkImageRecord(record);
    if (!checked.ok) throw new MonocoreError('MC_INTERNAL', `image record for ${record.reference}: ${checked.error}`, { reference: record.reference });
    await mkdir(this.dir, { recursive: true });
    const file = join(this.dir, `${recordKey(record.reference, record.platform)}.json`);
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    await rename(tmp, file);
  }

  /** The record for exactly this normalised reference and platform. */
  async find(reference: string, platform: string): Promise<ImageRecord | undefined> {
    return this.readRecord(join(this.dir, `${recordKey(reference, platform)}.json`));
  }

  private async readRecord(file: string): Promise<ImageRecord | undefined> {
    let raw: string;
    try {
      raw = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return undefined;
    }
    const r = checkImageRecord(parsed);
    // A record we cannot read is treated as absent (a pull rewrites it); never thrown at list time.
    return r.ok ? r.record : undefined;
  }

  async list(): Promise<ImageRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: ImageRecord[] = [];
    for (const n of names.filter((x) => /^[a-f0-9]{64}\.json$/.test(x))) {
      const r = await this.readRecord(join(this.dir, n)).catch(() => undefined);
      if (r) out.push(r);
    }
    return out.sort((a, b) => a.reference.localeCompare(b.reference) || a.platform.localeCompare(b.platform));
  }

  /**
   * Records matching `query`: a reference (normalised like a pull: "alpine" is
   * docker.io/library/alpine:latest), a manifest or index digest, or a hex prefix
   * of at least 6 characters of one. `platform` narrows the result.
   */
  async get(query: string, platform?: string): Promise<ImageRecord[]> {
    const all = await this.list();
    const byPlatform = (r: ImageRecord) => platform === undefined || r.platform === platform;
    const hex = query.startsWith('sha256:') ? query.slice(7) : query;
    if (/^[a-f0-9]{6,64}$/.test(hex)) {
      const hits = all.filter((r) => byPlatform(r) && (r.manifestDigest.slice(7).startsWith(hex) || r.digest.slice(7).startsWith(hex)));
      if (hits.length > 0 || isDigest(query)) return hits;
    }
    let normalised: string;
    try {
      normalised = parseImageReference(query).toString();
    } catch {
      return [];
    }
    return all.filter((r) => byPlatform(r) && r.reference === normalised);
  }

  /** Like get(), but throws MC_OCI_IMAGE_NOT_FOUND when nothing matches. */
  async require(query: string, platform?: string): Promise<ImageRecord[]> {
    const hits = await this.get(query, platform);
    if (hits.length === 0) {
      throw new MonocoreError('MC_OCI_IMAGE_NOT_FOUND', `no local image matches "${query}"${platform ? ` for ${platform}` : ''} (see monocore image ls)`, {
        query,
        platform,
      });
    }
    return hits;
  }

  /** Removes the records matching `query`; blobs and rootfs go at the next prune. */
  async remove(query: string, platform?: string): Promise<ImageRecord[]> {
    const hits = await this.require(query, platform);
    for (const r of hits) await unlink(join(this.dir, `${recordKey(r.reference, r.platform)}.json`)).catch(() => undefined);
    return hits;
  }

  // ---- leases: what in-flight pulls need ------------------------------------------

  /** Declares that this process is about to use `digests`; prune keeps them until release. */
  async lease(digests: string[]): Promise<{ release(): Promise<void> }> {
    await mkdir(this.leasesDir, { recursive: true });
    const file = join(this.leasesDir, `${process.pid}-${randomBytes(6).toString('hex')}.json`);
    await writeFile(file, JSON.stringify({ pid: process.pid, host: hostname(), digests, at: new Date().toISOString() }));
    return { release: () => unlink(file).catch(() => undefined) };
  }

  private async leasedDigests(): Promise<Set<string>> {
    const out = new Set<string>();
    let names: string[];
    try {
      names = await readdir(this.leasesDir);
    } catch {
      return out;
    }
    for (const n of names) {
      const file = join(this.leasesDir, n);
      try {
        const lease = JSON.parse(await readFile(file, 'utf8')) as { pid?: number; host?: string; digests?: string[] };
        const mine = lease.host === hostname();
        const alive = typeof lease.pid === 'number' && (!mine || pidAlive(lease.pid));
        if (!alive) {
          await unlink(file).catch(() => undefined);
          continue;
        }
        for (const d of lease.digests ?? []) out.add(d);
      } catch {
        // A lease being written right now: be conservative and keep going (its pull will also write a record).
      }
    }
    return out;
  }

  /**
   * Removes blobs, abandoned ingests and image rootfs directories that no image
   * record and no in-flight pull (lease) references.
   */
  async prune(options: PruneOptions = {}): Promise<PruneResult> {
    const records = await this.list();
    const keep = await this.leasedDigests();
    for (const r of records) {
      for (const d of r.blobs) keep.add(d);
      keep.add(r.manifestDigest);
    }
    const store = new LocalContentStore(this.home);
    const removedBlobs: string[] = [];
    let freedBytes = 0;
    for (const b of await store.list()) {
      if (keep.has(b.digest)) continue;
      if (await store.delete(b.digest)) {
        removedBlobs.push(b.digest);
        freedBytes += b.size;
      }
    }
    // Ingests nobody holds a lock on and nothing needs: partial downloads of pruned images.
    try {
      for (const hex of await readdir(this.home.ingestDir)) {
        if (keep.has(`sha256:${hex}`)) continue;
        const lock = await stat(join(this.home.ingestDir, hex, 'lock')).catch(() => undefined);
        if (lock) continue;
        const data = await stat(join(this.home.ingestDir, hex, 'data')).catch(() => undefined);
        freedBytes += data?.size ?? 0;
        await rm(join(this.home.ingestDir, hex), { recursive: true, force: true });
      }
    } catch {
      // no ingest dir
    }
    const removedRootfs: string[] = [];
    const keptInUse: string[] = [];
    const listRootfs = options.listRootfs ?? (() => this.listRootfsIds());
    // Loaded here, not at the top: the unpacker (tar, zstd) is not needed to list or find images.
    const removeRootfs = options.removeRootfs ?? (async (id: string) => void (await (await import('../rootfs/image-rootfs.js')).removeImageRootfs(this.home, id)));
    const unreferenced = (await listRootfs()).filter((id) => !keep.has(id));
    // An image removed with `image rm` while a service still runs on it: deleting
    // its rootfs would pull the filesystem from under the guest.
    const inUse = unreferenced.length > 0 ? await (options.rootfsInUse ?? (() => imageRootfsIdsInUse(this.home)))() : new Set<string>();
    for (const id of unreferenced) {
      if (inUse.has(id)) {
        keptInUse.push(id);
        continue;
      }
      await removeRootfs(id);
      removedRootfs.push(id);
    }
    return { removedBlobs, removedRootfs, keptInUse, freedBytes };
  }

  /** Image ids with a complete rootfs (rootfs/images/<hex>/; temp dirs start with "."). */
  private async listRootfsIds(): Promise<string[]> {
    try {
      return (await readdir(this.home.imageRootfsDir)).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
    } catch {
      return [];
    }
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
