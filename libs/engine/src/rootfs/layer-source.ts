import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { spawn, spawnSync } from 'node:child_process';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress as FzstdDecompress } from 'fzstd';
import { MonocoreError } from '../errors/index.js';
import { assertMagic, layerCompression, sniffCompression, type LayerCompression } from './layer-compression.js';

/**
 * Opens a layer blob as a stream of plain tar bytes.
 *
 * Decompressors (measured on an 827 MB tar, bench/RESULTS.md "rootfs unpack"):
 * - gzip: node:zlib (runs on the libuv thread pool, so it overlaps the tar work
 *   on the main thread) ~250 MB/s.
 * - zstd: Node 20 has none. The `zstd` CLI in a child process does ~570 MB/s
 *   on another core; the pure-JS `fzstd` ~100 MB/s and blocks the event loop
 *   while it works. So the CLI is used when it is on PATH, fzstd otherwise.
 */
export interface LayerSource {
  /** Decompressed tar bytes. Errors are MonocoreErrors naming the layer. */
  tar: Readable;
  compression: LayerCompression;
}

const READ_CHUNK = 1 << 20;
/** Decompressed bytes buffered ahead of the tar parser, so the decompressor (another thread or process) keeps working while the main thread writes files. */
const DECOMPRESSED_BUFFER = 16 << 20;

let zstdCli: boolean | undefined;
/** Whether a working `zstd` binary is on PATH (checked once per process). */
export function zstdCliAvailable(): boolean {
  if (zstdCli === undefined) {
    const r = spawnSync('zstd', ['--version'], { stdio: 'ignore' });
    zstdCli = r.status === 0;
  }
  return zstdCli;
}

export interface OpenLayerOptions {
  /** Layer digest or label, used in every error message. */
  layer: string;
  /** The declared media type; its compression must match the blob's magic bytes. */
  mediaType?: string;
  /** Used when no mediaType is given: a fixed compression, or 'auto' to sniff (default). */
  compression?: LayerCompression | 'auto';
  /** Compressed bytes read so far (for progress). */
  onBytes?: (total: number) => void;
  /** Force the pure-JS zstd decoder (tests, and hosts without the CLI). */
  zstdImpl?: 'cli' | 'fzstd';
}

export async function openLayerFile(path: string, opts: OpenLayerOptions): Promise<LayerSource> {
  const { layer } = opts;
  let head: Buffer;
  try {
    const fh = await open(path, 'r');
    try {
      head = Buffer.alloc(512);
      const { bytesRead } = await fh.read(head, 0, 512, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new MonocoreError('MC_ROOTFS_LAYER_MISSING', `layer ${layer}: cannot read blob ${path}: ${(err as Error).message}`, { layer, path }, { cause: err });
  }
  let compression: LayerCompression;
  if (opts.mediaType !== undefined) {
    compression = layerCompression(opts.mediaType, layer);
    assertMagic(head, compression, layer, opts.mediaType);
  } else if (opts.compression === undefined || opts.compression === 'auto') {
    const seen = sniffCompression(head);
    if (seen === 'unknown') {
      throw new MonocoreError('MC_ROOTFS_BAD_LAYER', `layer ${layer}: blob ${path} is neither gzip, zstd nor tar`, { layer, path });
    }
    compression = seen;
  } else {
    compression = opts.compression;
    assertMagic(head, compression, layer, compression);
  }

  const raw = createReadStream(path, { highWaterMark: READ_CHUNK });
  let read = 0;
  if (opts.onBytes) {
    const cb = opts.onBytes;
    raw.on('data', (c) => {
      read += c.length;
      cb(read);
    });
  }
  return { tar: decompress(raw, compression, layer, opts.zstdImpl), compression };
}

/** Wraps a compressed stream; errors become MC_ROOTFS_BAD_LAYER naming the layer. */
export function decompress(raw: Readable, compression: LayerCompression, layer: string, zstdImpl?: 'cli' | 'fzstd'): Readable {
  const badLayer = (err: Error): MonocoreError =>
    err instanceof MonocoreError
      ? err
      : new MonocoreError('MC_ROOTFS_BAD_LAYER', `layer ${layer}: corrupt ${compression} stream: ${err.message}`, { layer, compression }, { cause: err });
  const out = new PassThrough({ highWaterMark: DECOMPRESSED_BUFFER });
  raw.on('error', (err) => out.destroy(err instanceof MonocoreError ? err :
    new MonocoreError('MC_ROOTFS_LAYER_MISSING', `layer ${layer}: reading the blob failed: ${err.message}`, { layer }, { cause: err })));
  out.on('close', () => raw.destroy());

  if (compression === 'none') {
    raw.pipe(out);
  } else if (compression === 'gzip') {
    const gunzip = createGunzip({ chunkSize: 1 << 20 });
    gunzip.on('error', (err) => out.destroy(badLayer(err)));
    raw.pipe(gunzip).pipe(out);
    out.on('close', () => gunzip.destroy());
  } else if ((zstdImpl ?? (zstdCliAvailable() ? 'cli' : 'fzstd')) === 'cli') {
    const child = spawn('zstd', ['-d', '-c', '-q', '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { if (stderr.length < 4096) stderr += s; });
    child.stdin.on('error', () => undefined); // EPIPE when zstd stops early: its exit status reports why
    child.on('error', (err) => out.destroy(badLayer(err)));
    raw.pipe(child.stdin);
    child.stdout.pipe(out, { end: false });
    child.on('close', (code, signal) => {
      if (code === 0) out.end();
      else if (!out.destroyed) out.destroy(badLayer(new Error(stderr.trim() || `zstd exited with ${code ?? signal}`)));
    });
    out.on('close', () => { if (child.exitCode === null) child.kill('SIGKILL'); });
  } else {
    const t = fzstdTransform();
    t.on('error', (err) => out.destroy(badLayer(err)));
    raw.pipe(t).pipe(out);
  }
  return out;
}

function fzstdTransform(): Transform {
  let pending: Uint8Array[] = [];
  const d = new FzstdDecompress((chunk) => { pending.push(chunk); });
  const flush = (t: Transform): void => {
    // Copied: fzstd may reuse its window buffer for the next chunk.
    for (const c of pending) t.push(Buffer.from(c));
    pending = [];
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        d.push(chunk);
        flush(this);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    final(cb) {
      try {
        d.push(new Uint8Array(0), true);
        flush(this);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}
