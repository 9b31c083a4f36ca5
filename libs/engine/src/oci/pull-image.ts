import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MonocoreError, isMonocoreError } from '../errors/index.js';
import type { MonocoreHome } from '../home/index.js';
import { blockImageToolAvailable, ensureImageBlock, ensureImageRootfs, imageBlockReady } from '../rootfs/index.js';
import { commitTrusted } from '../rootfs/commit-marker.js';
import { parseImageReference, type ImageReference } from './image-reference.js';
import { ImageStore, newImageRecord, type ImageRecord } from './image-store.js';
import { LocalContentStore } from './local-content-store.js';
import { parseImageConfig, parseManifest, type Descriptor, type ImageManifest } from './manifest.js';
import type { RuntimeConfig } from './runtime-config.js';
import { formatPlatform, hostPlatform, parsePlatform, platformMatches, selectPlatform, type Platform } from './platform.js';
import { RegistryClient } from './registry-client.js';
import { loadRegistriesFile } from './registries-config.js';
import { RegistryPolicy, type RegistryPolicyData } from './registry-policy.js';

/**
 * Snapshot of a pull's progress. Bytes are compressed layer bytes: downloaded while
 * `downloading`, read by the unpacker while `unpacking` (each phase counts from 0 to total).
 * `building`: the image's read-only block filesystem is being made from the rootfs
 * (rootfs/image-block.ts; bytes stay at total). A cold pull writes it during the unpack
 * (erofs-writer.ts), so it reports this phase only when the block image is built after.
 */
export interface PullProgress {
  phase: 'resolving' | 'downloading' | 'unpacking' | 'building' | 'done';
  layers: Array<{ digest: string; done: number; total: number }>;
  done: number;
  total: number;
}

export interface PullImageOptions {
  home: MonocoreHome;
  /** "os/arch[/variant]" or a Platform; default: the host's (always linux). */
  platform?: string | Platform;
  onProgress?: (progress: PullProgress) => void;
  signal?: AbortSignal;
  /** Registry client to use (default: one shared client built from the environment). */
  client?: RegistryClient;
  /** Parallel layer downloads (default 3). */
  concurrency?: number;
  /**
   * The registry policy of whoever asked (a REST caller): every address the pull
   * connects to is checked against it. Used with the shared client of that policy
   * unless `client` is given.
   */
  policy?: RegistryPolicyData;
}

export interface PulledImage {
  /** Normalised reference, e.g. docker.io/library/alpine:latest. */
  reference: string;
  /** The platform's image manifest digest (the image id). */
  manifestDigest: string;
  platform: string;
  /** Host path of the unpacked read-only rootfs. */
  rootfs: string;
  config: RuntimeConfig;
  /**
   * Set by pullImage: how this call got the image. warm: already unpacked here
   * (one manifest HEAD); cold: this call downloaded and unpacked it; joined: it
   * waited for the same pull already running in this process.
   */
  cache?: 'warm' | 'cold' | 'joined';
  /** Cold pulls: seconds spent unpacking (ImageRootfs.unpackSeconds); absent otherwise. */
  unpackSeconds?: number;
  /** Seconds spent building the block image (ImageBlock.buildSeconds); absent when it was there or not built. */
  blockSeconds?: number;
}

/**
 * After the unpack: the image's read-only block filesystem, which the qemu backend
 * boots from. A cold unpack writes it in the same pass (`wantsBlockImage`); this builds
 * it where that did not happen (an image unpacked before), so the first VM does not wait
 * for it. Skipped where mkfs.erofs is absent (a host that runs no QEMU; the qemu backend
 * reports the tool missing itself).
 */
export async function buildPulledBlock(home: MonocoreHome, imageId: string, layers: Descriptor[], emit: (p: PullProgress) => void): Promise<number | undefined> {
  if (!blockImageToolAvailable()) return undefined;
  if (await imageBlockReady(home, imageId)) return undefined;
  emit(buildingProgress(layers));
  return (await ensureImageBlock({ home, imageId })).buildSeconds;
}

/** The `building` phase's progress event (every layer done). */
export function buildingProgress(layers: Descriptor[]): PullProgress {
  const ls = layers.map((l) => ({ digest: l.digest, done: l.size, total: l.size }));
  const total = ls.reduce((a, l) => a + l.total, 0);
  return { phase: 'building', layers: ls, done: total, total };
}

/** Whether an unpack should write the image's block image as it goes: where block images are built at all. */
export function wantsBlockImage(): boolean {
  return blockImageToolAvailable();
}

const sharedClients = new Map<string, RegistryClient>();

/**
 * The process-wide client for a home (token cache shared by every pull), built on
 * first use from the environment plus `$MONOCORE_HOME/registries.toml` (the
 * environment's mirrors and insecure hosts add to the file's; credentials in the
 * file win over MONOCORE_REGISTRY_AUTH and ~/.docker/config.json).
 */
export function defaultRegistryClient(home?: MonocoreHome, policy?: RegistryPolicyData): RegistryClient {
  const key = `${home?.root ?? ''}\n${policy ? JSON.stringify(policy) : ''}`;
  let c = sharedClients.get(key);
  if (!c) {
    const options = home ? loadRegistriesFile(home.registriesFile) : {};
    if (policy) options.policy = new RegistryPolicy(policy);
    c = RegistryClient.fromEnv(process.env, options);
    sharedClients.set(key, c);
  }
  return c;
}

/** Closes the shared clients' connections (CLI commands call this before exiting). */
export async function closeDefaultRegistryClient(): Promise<void> {
  const all = [...sharedClients.values()];
  sharedClients.clear();
  await Promise.all(all.map((c) => c.close()));
}

interface Inflight {
  promise: Promise<PulledImage>;
  listeners: Set<(p: PullProgress) => void>;
}

/** Concurrent pulls of one image (same home, reference, platform) in this process share one pull. */
const inflight = new Map<string, Inflight>();

export function resolvePlatform(p: string | Platform | undefined): Platform {
  if (p === undefined) return hostPlatform();
  return typeof p === 'string' ? parsePlatform(p) : p;
}

/**
 * Pulls an image into the local store and unpacks its rootfs. A warm pull (the
 * reference still resolves to a recorded manifest whose rootfs exists) makes
 * one HEAD manifest request — none for a digest reference — and returns.
 */
export async function pullImage(reference: string, options: PullImageOptions): Promise<PulledImage> {
  const ref = parseImageReference(reference);
  const platform = resolvePlatform(options.platform);
  // A pull under a registry policy never joins an unchecked one (nor the other way round).
  const key = `${options.home.root}\n${ref.toString()}\n${formatPlatform(platform)}\n${options.policy ? JSON.stringify(options.policy) : ''}`;
  const existing = inflight.get(key);
  if (existing) {
    const l = options.onProgress;
    if (l) existing.listeners.add(l);
    try {
      // The unpack was the other caller's work: not reported twice.
      return { ...(await existing.promise), cache: 'joined', unpackSeconds: undefined, blockSeconds: undefined };
    } finally {
      if (l) existing.listeners.delete(l);
    }
  }
  const listeners = new Set<(p: PullProgress) => void>();
  if (options.onProgress) listeners.add(options.onProgress);
  const emit = (p: PullProgress) => {
    for (const l of listeners) {
      try {
        l(p);
      } catch {
        // A failing progress listener must not fail the pull.
      }
    }
  };
  const promise = doPull(ref, platform, options, emit);
  inflight.set(key, { promise, listeners });
  try {
    return await promise;
  } finally {
    inflight.delete(key);
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function pulledFrom(r: ImageRecord): PulledImage {
  return { reference: r.reference, manifestDigest: r.manifestDigest, platform: r.platform, rootfs: r.rootfs, config: r.config };
}

async function doPull(ref: ImageReference, platform: Platform, options: PullImageOptions, emit: (p: PullProgress) => void): Promise<PulledImage> {
  const { home, signal } = options;
  const client = options.client ?? defaultRegistryClient(home, options.policy);
  const images = new ImageStore(home);
  const blobs = new LocalContentStore(home);
  const platformStr = formatPlatform(platform);
  const reference = ref.toString();
  const repo = { registry: ref.registry, repository: ref.repository };

  emit({ phase: 'resolving', layers: [], done: 0, total: 0 });
  let topDigest = ref.digest;
  // A tag needs the registry's answer anyway: read the local record while the HEAD is in flight.
  const [record, head] = await Promise.all([
    images.find(reference, platformStr),
    topDigest === undefined ? client.headManifest(repo, ref.tag ?? 'latest', signal) : undefined,
  ]);
  topDigest ??= head!.digest;
  // Warm only if the rootfs is there and trusted (not an unconfirmed tree from before a reboot).
  if (record && record.digest === topDigest && (await exists(record.rootfs)) && (await commitTrusted(dirname(record.rootfs)))) {
    emit(doneProgress(record));
    return { ...pulledFrom(record), cache: 'warm' };
  }

  // Cold (or changed) image: resolve the manifest for our platform.
  const top = await getManifestCached(client, blobs, repo, topDigest, signal);
  let manifestDigest = topDigest;
  let manifestMediaType = top.mediaType;
  let manifest: ImageManifest;
  const kept = [topDigest];
  if (top.parsed.kind === 'index') {
    const desc = selectPlatform(top.parsed.index.manifests, platform, `${reference}`);
    const m = await getManifestCached(client, blobs, repo, desc.digest, signal);
    if (m.parsed.kind !== 'manifest') {
      throw new MonocoreError('MC_OCI_UNSUPPORTED_MEDIA_TYPE', `${reference}: index entry ${desc.digest} is a nested index, not an image manifest`, {
        digest: desc.digest,
      });
    }
    manifestDigest = desc.digest;
    manifestMediaType = m.mediaType;
    manifest = m.parsed.manifest;
    kept.push(desc.digest);
  } else {
    manifest = top.parsed.manifest;
  }

  // Config: small, fetched into memory and verified.
  let configBytes: Buffer;
  if (await blobs.info(manifest.config.digest)) {
    configBytes = await blobs.read(manifest.config.digest);
  } else {
    configBytes = await client.getBlobBytes(repo, manifest.config, signal);
    await blobs.put(manifest.config.digest, configBytes, manifest.config.size);
  }
  const config = parseImageConfig(configBytes, `${reference} config ${manifest.config.digest}`);
  if (config.os && config.architecture) {
    const actual: Platform = { os: config.os, architecture: config.architecture };
    if (config.variant) actual.variant = config.variant;
    if (!platformMatches(platform, actual)) {
      throw new MonocoreError(
        'MC_OCI_NO_MATCHING_PLATFORM',
        `${reference}: the image is for ${formatPlatform(actual)}, not ${platformStr}; available: ${formatPlatform(actual)} (choose it with --platform)`,
        { wanted: platformStr, available: [formatPlatform(actual)] },
      );
    }
  }
  kept.push(manifest.config.digest);

  const lease = await images.lease([...kept, ...manifest.layers.map((l) => l.digest)]);
  try {
    // Download and unpack overlap: the unpacker applies layer N as soon as its
    // blob is committed (verified) while later layers still download. The first
    // failure of either side aborts the other; the pull reports that first error.
    const ctl = new AbortController();
    const both = signal ? AbortSignal.any([signal, ctl.signal]) : ctl.signal;
    const ready = new Map(manifest.layers.map((l) => [l.digest, deferred()]));
    // Progress phases stay in order: unpack snapshots taken while downloads run are held back.
    let downloading = true;
    let heldUnpack: PullProgress | undefined;
    const emitUnpack = (p: PullProgress): void => {
      if (downloading) heldUnpack = p;
      else emit(p);
    };
    let firstError: { err: unknown } | undefined;
    const fail = (err: unknown): void => {
      firstError ??= { err };
      ctl.abort(err);
    };
    const download = downloadLayers(client, blobs, repo, manifest.layers, { ...options, signal: both }, emit, ready).then(
      () => {
        downloading = false;
        if (heldUnpack) emit(heldUnpack);
      },
      (err: unknown) => {
        fail(err);
        throw err;
      },
    );
    const unpack = ensureImageRootfs({
      home,
      imageId: manifestDigest,
      layers: manifest.layers.map((l) => ({
        digest: l.digest,
        mediaType: l.mediaType,
        size: l.size,
        path: blobs.path(l.digest),
        ready: ready.get(l.digest)!.promise,
      })),
      onProgress: unpackReporter(manifest.layers, emitUnpack),
      signal: both,
      blockImage: wantsBlockImage(),
      onBlockFinish: () => emitUnpack(buildingProgress(manifest.layers)),
    }).catch((err: unknown) => {
      fail(err);
      throw err;
    });
    // Wait for both sides to settle, so a failed pull has removed its temp rootfs before it reports.
    const [dl, up] = await Promise.allSettled([download, unpack]);
    if (firstError) throw firstError.err;
    if (dl.status === 'rejected') throw dl.reason;
    if (up.status === 'rejected') throw up.reason;
    const { rootfs, unpackSeconds } = up.value;
    const blockSeconds = up.value.blockSeconds ?? (await buildPulledBlock(home, manifestDigest, manifest.layers, emit));
    const rec = newImageRecord({
      reference,
      platform: platformStr,
      digest: topDigest,
      manifestDigest,
      manifestMediaType: manifestMediaType,
      manifest,
      config,
      rootfs,
      kept,
      source: 'registry',
    });
    await images.put(rec);
    emit(doneProgress(rec));
    return { ...pulledFrom(rec), cache: 'cold', unpackSeconds, blockSeconds };
  } finally {
    await lease.release();
  }
}

/**
 * Maps the unpacker's events (1-based layer index, compressed bytes read of it) to
 * PullProgress snapshots in the `unpacking` phase, at most every 100 ms.
 */
export function unpackReporter(
  layers: Array<{ digest: string; size: number }>,
  emit: (p: PullProgress) => void,
): (e: { layer: number; layers: number; digest: string; bytes?: number }) => void {
  let last = 0;
  const snapshot = (current: number, bytes: number): PullProgress => {
    const ls = layers.map((l, i) => ({ digest: l.digest, done: i < current ? l.size : i === current ? Math.min(bytes, l.size) : 0, total: l.size }));
    return { phase: 'unpacking', layers: ls, done: ls.reduce((a, l) => a + l.done, 0), total: ls.reduce((a, l) => a + l.total, 0) };
  };
  emit(snapshot(0, 0));
  return (e) => {
    const now = Date.now();
    if (now - last < 100 && e.bytes !== undefined) return;
    last = now;
    emit(snapshot(e.layer - 1, e.bytes ?? 0));
  };
}

function doneProgress(r: ImageRecord): PullProgress {
  const layers = r.layers.map((l) => ({ digest: l.digest, done: l.size, total: l.size }));
  const total = layers.reduce((a, l) => a + l.total, 0);
  return { phase: 'done', layers, done: total, total };
}

function progressOf(done: Map<string, number>, layers: Descriptor[]): PullProgress {
  const ls = layers.map((l) => ({ digest: l.digest, done: Math.min(done.get(l.digest) ?? 0, l.size), total: l.size }));
  return { phase: 'downloading', layers: ls, done: ls.reduce((a, l) => a + l.done, 0), total: ls.reduce((a, l) => a + l.total, 0) };
}

async function getManifestCached(
  client: RegistryClient,
  blobs: LocalContentStore,
  repo: { registry: string; repository: string },
  digest: string,
  signal: AbortSignal | undefined,
): Promise<{ mediaType: string; parsed: ReturnType<typeof parseManifest> }> {
  const what = `manifest ${repo.registry}/${repo.repository}@${digest}`;
  let bytes: Buffer;
  let contentType: string | undefined;
  if (await blobs.info(digest)) {
    bytes = await blobs.read(digest);
  } else {
    const m = await client.getManifest(repo, digest, signal);
    bytes = m.bytes;
    contentType = m.mediaType;
    await blobs.put(digest, bytes);
  }
  const parsed = parseManifest(bytes, contentType, what);
  return { mediaType: parsed.mediaType, parsed };
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
  settled: boolean;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The unpacker may never reach a layer whose download failed: never an unhandled rejection.
  promise.catch(() => undefined);
  const d: Deferred = {
    promise,
    settled: false,
    resolve: () => {
      d.settled = true;
      resolve();
    },
    reject: (err) => {
      d.settled = true;
      reject(err);
    },
  };
  return d;
}

/**
 * Downloads missing layers, at most `concurrency` at a time; resolves each layer's
 * `ready` entry when its blob is committed. The first failure stops the queue and
 * rejects every unsettled `ready` entry with that error.
 */
async function downloadLayers(
  client: RegistryClient,
  blobs: LocalContentStore,
  repo: { registry: string; repository: string },
  layers: Descriptor[],
  options: PullImageOptions,
  emit: (p: PullProgress) => void,
  ready: Map<string, Deferred>,
): Promise<Map<string, number>> {
  const done = new Map<string, number>();
  let lastEmit = 0;
  const report = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastEmit < 100) return;
    lastEmit = now;
    emit(progressOf(done, layers));
  };
  const unique = [...new Map(layers.map((l) => [l.digest, l])).values()];
  let failed: { err: unknown } | undefined;
  const failAll = (err: unknown): void => {
    failed ??= { err };
    for (const d of ready.values()) if (!d.settled) d.reject(failed.err);
  };
  try {
    for (const l of unique) {
      if (await blobs.info(l.digest)) {
        done.set(l.digest, l.size);
        ready.get(l.digest)?.resolve();
      }
    }
  } catch (err) {
    failAll(err);
    throw err;
  }
  report(true);
  const queue = unique.filter((l) => !done.has(l.digest));
  const workers = Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 3, queue.length)) }, async () => {
    for (let l = queue.shift(); l && !failed; l = queue.shift()) {
      try {
        await downloadLayer(client, blobs, repo, l, options.signal, (n) => {
          done.set(l.digest, n);
          report(false);
        });
      } catch (err) {
        failAll(err);
        queue.length = 0;
        throw err;
      }
      done.set(l.digest, l.size);
      ready.get(l.digest)?.resolve();
      report(true);
    }
  });
  await Promise.allSettled(workers);
  if (failed) throw failed.err;
  return done;
}

async function downloadLayer(
  client: RegistryClient,
  blobs: LocalContentStore,
  repo: { registry: string; repository: string },
  layer: Descriptor,
  signal: AbortSignal | undefined,
  onBytes: (n: number) => void,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let resumedFrom = 0;
    try {
      await blobs.ensure(
        layer.digest,
        layer.size,
        async (writer) => {
          resumedFrom = writer.offset;
          if (writer.offset > 0) onBytes(writer.offset);
          await client.fetchBlob(repo, layer, writer, { ...(signal ? { signal } : {}), onBytes });
        },
        { ...(signal ? { signal } : {}), onWaitProgress: onBytes },
      );
      return;
    } catch (err) {
      // Bytes kept from an earlier, interrupted run may be what is wrong: the bad
      // ingest was deleted by the failed commit, so one fresh download can help.
      if (attempt === 1 && resumedFrom > 0 && isMonocoreError(err, 'MC_OCI_DIGEST_MISMATCH')) continue;
      throw err;
    }
  }
}
