import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { extract as tarExtract } from 'tar';
import { MonocoreError, isMonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { ensureImageRootfs } from '../rootfs/index.js';
import { digestHex, isDigest, verifyBytes } from './digest.js';
import { parseImageReference } from './image-reference.js';
import { ImageStore, newImageRecord } from './image-store.js';
import { LocalContentStore } from './local-content-store.js';
import { parseImageConfig, parseManifest, type Descriptor, type ImageManifest } from './manifest.js';
import { formatPlatform, platformMatches, selectPlatform, type Platform } from './platform.js';
import { buildPulledBlock, buildingProgress, resolvePlatform, unpackReporter, wantsBlockImage, type PulledImage, type PullProgress } from './pull-image.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

export interface ImportImageOptions {
  home: MonocoreHome;
  /** Name to record the image under (default: from the layout's annotations, else localhost/<dir>:<tag>). */
  reference?: string;
  /** Import only the layout entry with this org.opencontainers.image.ref.name (e.g. "latest"). */
  tag?: string;
  /** Platform to pick from an index (default: the host's). */
  platform?: string | Platform;
  onProgress?: (progress: PullProgress) => void;
}

function layoutError(path: string, message: string, details: Record<string, unknown> = {}): MonocoreError {
  return new MonocoreError('MC_OCI_INVALID_LAYOUT', `${path}: ${message}`, { path, ...details });
}

/**
 * `monocore image import PATH`: imports an OCI image layout directory or an
 * oci-archive tarball (a tar of such a directory, as `skopeo copy ... oci-archive:`
 * writes). Every blob is verified (size and sha256) while it is copied into the
 * content store; nothing unverified is stored. Returns one image per imported entry.
 */
export async function importImage(path: string, options: ImportImageOptions): Promise<PulledImage[]> {
  const abs = resolve(path);
  const st = await stat(abs).catch(() => undefined);
  if (!st) throw layoutError(abs, 'no such file or directory');
  if (st.isDirectory()) return importLayout(abs, basename(abs), options);
  // An archive: unpack it into scratch space on the same filesystem, import, clean up.
  const scratch = join(options.home.tmpDir, `import-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(scratch, { recursive: true });
  try {
    try {
      await tarExtract({
        file: abs,
        cwd: scratch,
        strict: true,
        // An image layout holds only directories and regular files; anything else
        // (links, devices) is not extracted, and node-tar refuses ".." and absolute names.
        filter: (_p, entry) => {
          const type = (entry as { type?: string }).type;
          return type === 'File' || type === 'Directory' || type === 'OldFile' || type === 'ContiguousFile';
        },
      });
    } catch (err) {
      throw layoutError(abs, `not a readable oci-archive tarball (${(err as Error).message})`);
    }
    const name = basename(abs).replace(/\.(tar|oci|oci-archive)$/i, '');
    return await importLayout(scratch, name, options, abs);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

interface LayoutIndexEntry extends Descriptor {
  annotations?: Record<string, string>;
}

async function importLayout(dir: string, defaultName: string, options: ImportImageOptions, shownAs = dir): Promise<PulledImage[]> {
  const ociLayout = await readFile(join(dir, 'oci-layout'), 'utf8').catch(() => undefined);
  if (ociLayout === undefined) throw layoutError(shownAs, 'no "oci-layout" file: not an OCI image layout');
  try {
    const v = (JSON.parse(ociLayout) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    if (typeof v !== 'string' || !v.startsWith('1.')) throw new Error(`imageLayoutVersion ${String(v)}`);
  } catch (err) {
    throw layoutError(shownAs, `oci-layout: unsupported or invalid (${(err as Error).message})`, { file: 'oci-layout' });
  }
  const indexBytes = await readFile(join(dir, 'index.json')).catch(() => undefined);
  if (!indexBytes) throw layoutError(shownAs, 'no index.json', { file: 'index.json' });
  let parsed;
  try {
    parsed = parseManifest(indexBytes, 'application/vnd.oci.image.index.v1+json', `${shownAs}/index.json`);
  } catch (err) {
    if (isMonocoreError(err)) throw layoutError(shownAs, `index.json: ${err.message}`, { file: 'index.json' });
    throw err;
  }
  if (parsed.kind !== 'index') throw layoutError(shownAs, 'index.json is not an image index', { file: 'index.json' });
  let entries = parsed.index.manifests as LayoutIndexEntry[];
  if (options.tag !== undefined) {
    entries = entries.filter((e) => e.annotations?.[REF_NAME] === options.tag);
    if (entries.length === 0) {
      const tags = parsed.index.manifests.map((e) => e.annotations?.[REF_NAME]).filter(Boolean);
      throw layoutError(shownAs, `no entry tagged "${options.tag}" (tags: ${tags.join(', ') || 'none'})`, { tag: options.tag });
    }
  }
  if (entries.length === 0) throw layoutError(shownAs, 'index.json lists no images');
  if (options.reference !== undefined && entries.length > 1) {
    throw layoutError(shownAs, `holds ${entries.length} images; pick one with --tag to name it ${options.reference}`);
  }
  const platform = resolvePlatform(options.platform);
  const out: PulledImage[] = [];
  for (const entry of entries) {
    const reference = options.reference !== undefined ? parseImageReference(options.reference).toString() : referenceFor(entry, defaultName);
    out.push(await importEntry(dir, shownAs, entry, reference, platform, options));
  }
  return out;
}

function referenceFor(entry: LayoutIndexEntry, defaultName: string): string {
  const named = entry.annotations?.[CONTAINERD_NAME];
  if (named) return parseImageReference(named).toString();
  const refName = entry.annotations?.[REF_NAME];
  if (refName && refName.includes('/')) {
    try {
      return parseImageReference(refName).toString();
    } catch {
      // not a full reference: treat as a tag below
    }
  }
  const repo = defaultName.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[._-]+|[._-]+$/g, '') || 'image';
  const tag = refName && /^[\w][\w.-]{0,127}$/.test(refName) ? refName : 'latest';
  return parseImageReference(`localhost/${repo}:${tag}`).toString();
}

function blobFile(dir: string, shownAs: string, d: Descriptor): string {
  if (!isDigest(d.digest)) throw layoutError(shownAs, `descriptor digest "${d.digest}" is not sha256`, { digest: d.digest });
  return join(dir, 'blobs', 'sha256', digestHex(d.digest));
}

async function readSmallBlob(dir: string, shownAs: string, d: Descriptor, store: LocalContentStore): Promise<Buffer> {
  const file = blobFile(dir, shownAs, d);
  const bytes = await readFile(file).catch(() => undefined);
  if (!bytes) throw layoutError(shownAs, `blob ${d.digest} is missing (blobs/sha256/${digestHex(d.digest)})`, { digest: d.digest });
  verifyBytes(d.digest, bytes, d.size, `${shownAs}: blob`);
  await store.put(d.digest, bytes, d.size);
  return bytes;
}

async function importEntry(
  dir: string,
  shownAs: string,
  entry: LayoutIndexEntry,
  reference: string,
  platform: Platform,
  options: ImportImageOptions,
): Promise<PulledImage> {
  const store = new LocalContentStore(options.home);
  const images = new ImageStore(options.home);
  const platformStr = formatPlatform(platform);
  const kept = [entry.digest];
  const topBytes = await readSmallBlob(dir, shownAs, entry, store);
  let top = parseManifest(topBytes, entry.mediaType, `${shownAs}: manifest ${entry.digest}`);
  let manifestDigest = entry.digest;
  if (top.kind === 'index') {
    const d = selectPlatform(top.index.manifests, platform, `${shownAs} (${reference})`);
    top = parseManifest(await readSmallBlob(dir, shownAs, d, store), d.mediaType, `${shownAs}: manifest ${d.digest}`);
    if (top.kind !== 'manifest') throw layoutError(shownAs, `index entry ${d.digest} is a nested index`, { digest: d.digest });
    manifestDigest = d.digest;
    kept.push(d.digest);
  }
  const manifest: ImageManifest = top.manifest;
  const config = parseImageConfig(await readSmallBlob(dir, shownAs, manifest.config, store), `${shownAs}: config ${manifest.config.digest}`);
  kept.push(manifest.config.digest);
  if (config.os && config.architecture) {
    const actual: Platform = { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
    if (!platformMatches(platform, actual)) {
      throw new MonocoreError('MC_OCI_NO_MATCHING_PLATFORM', `${shownAs}: the image is for ${formatPlatform(actual)}, not ${platformStr}; available: ${formatPlatform(actual)}`, {
        wanted: platformStr,
        available: [formatPlatform(actual)],
      });
    }
  }
  const lease = await images.lease([...kept, ...manifest.layers.map((l) => l.digest)]);
  try {
    const done = new Map<string, number>();
    const emit = (phase: PullProgress['phase']) => {
      const layers = manifest.layers.map((l) => ({ digest: l.digest, done: done.get(l.digest) ?? 0, total: l.size }));
      options.onProgress?.({ phase, layers, done: layers.reduce((a, l) => a + l.done, 0), total: layers.reduce((a, l) => a + l.total, 0) });
    };
    for (const layer of manifest.layers) {
      const file = blobFile(dir, shownAs, layer);
      const st = await stat(file).catch(() => undefined);
      if (!st) throw layoutError(shownAs, `layer blob ${layer.digest} is missing (blobs/sha256/${digestHex(layer.digest)})`, { digest: layer.digest });
      await store.ensure(layer.digest, layer.size, async (writer) => {
        if (writer.offset > 0) await writer.reset();
        for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
          await writer.write(chunk as Buffer);
          done.set(layer.digest, writer.offset);
        }
      });
      done.set(layer.digest, layer.size);
      emit('downloading');
    }
    const { rootfs } = await ensureImageRootfs({
      home: options.home,
      imageId: manifestDigest,
      layers: manifest.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size, path: store.path(l.digest) })),
      onProgress: unpackReporter(manifest.layers, (p) => options.onProgress?.(p)),
      blockImage: wantsBlockImage(),
      onBlockFinish: () => options.onProgress?.(buildingProgress(manifest.layers)),
    });
    await buildPulledBlock(options.home, manifestDigest, manifest.layers, (p) => options.onProgress?.(p));
    const rec = newImageRecord({
      reference,
      platform: platformStr,
      digest: entry.digest,
      manifestDigest,
      manifestMediaType: top.mediaType,
      manifest,
      config,
      rootfs,
      kept,
      source: 'import',
    });
    await images.put(rec);
    emit('done');
    return { reference, manifestDigest, platform: platformStr, rootfs, config: rec.config };
  } finally {
    await lease.release();
  }
}
