import { MonocoreError } from '../errors/index.js';

/** How a layer blob is compressed. */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

/**
 * Layer media types the unpacker accepts, with their compression. OCI image-spec
 * 1.1 (`layer.v1.tar[+gzip|+zstd]`, the deprecated `nondistributable` variants)
 * and Docker schema 2 (`rootfs.diff.tar.gzip`, `foreign`, plus the rarely seen
 * uncompressed/zstd spellings some builders emit).
 */
const LAYER_MEDIA_TYPES: ReadonlyMap<string, LayerCompression> = new Map([
  ['application/vnd.oci.image.layer.v1.tar', 'none'],
  ['application/vnd.oci.image.layer.v1.tar+gzip', 'gzip'],
  ['application/vnd.oci.image.layer.v1.tar+zstd', 'zstd'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar', 'none'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+zstd', 'zstd'],
  ['application/vnd.docker.image.rootfs.diff.tar', 'none'],
  ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'gzip'],
  ['application/vnd.docker.image.rootfs.diff.tar.zstd', 'zstd'],
  ['application/vnd.docker.image.rootfs.foreign.diff.tar', 'none'],
  ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'gzip'],
  ['application/vnd.docker.image.rootfs.foreign.diff.tar.zstd', 'zstd'],
]);

export const SUPPORTED_LAYER_MEDIA_TYPES: readonly string[] = [...LAYER_MEDIA_TYPES.keys()];

/** The compression a layer media type declares; MC_ROOTFS_UNSUPPORTED_MEDIA_TYPE otherwise. */
export function layerCompression(mediaType: string, layer = ''): LayerCompression {
  const c = LAYER_MEDIA_TYPES.get(mediaType);
  if (c === undefined) {
    const why = /encrypted/.test(mediaType) ? ' (encrypted layers are not supported)' : '';
    throw new MonocoreError(
      'MC_ROOTFS_UNSUPPORTED_MEDIA_TYPE',
      `layer ${layer || '?'}: unsupported media type "${mediaType}"${why}; supported: ${SUPPORTED_LAYER_MEDIA_TYPES.join(', ')}`,
      { layer, mediaType },
    );
  }
  return c;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

const startsWith = (buf: Uint8Array, magic: number[]): boolean =>
  buf.length >= magic.length && magic.every((b, i) => buf[i] === b);

/**
 * What the first bytes of a blob look like: 'gzip', 'zstd', 'tar' (a ustar/gnu
 * header or an all-zero end-of-archive block), or 'unknown'. Needs ≥ 512 bytes
 * to recognise a tar.
 */
export function sniffCompression(head: Uint8Array): LayerCompression | 'unknown' {
  if (startsWith(head, GZIP_MAGIC)) return 'gzip';
  if (startsWith(head, ZSTD_MAGIC)) return 'zstd';
  if (head.length >= 512) {
    const magic = Buffer.from(head.subarray(257, 262)).toString('latin1');
    if (magic === 'ustar') return 'none';
    if (head.subarray(0, 512).every((b) => b === 0)) return 'none';
    // Pre-POSIX (v7) tar has no magic: accept a header whose checksum is right.
    if (tarChecksumValid(head.subarray(0, 512))) return 'none';
  }
  return 'unknown';
}

function tarChecksumValid(block: Uint8Array): boolean {
  const field = Buffer.from(block.subarray(148, 156)).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  return sum === parseInt(field, 8);
}

/** Throws MC_ROOTFS_BAD_LAYER when the blob's first bytes contradict its media type. */
export function assertMagic(head: Uint8Array, expected: LayerCompression, layer: string, mediaType: string): void {
  const seen = sniffCompression(head);
  if (seen === expected) return;
  const what = seen === 'unknown' ? 'neither gzip, zstd nor tar' : seen === 'none' ? 'an uncompressed tar' : `${seen} data`;
  throw new MonocoreError(
    'MC_ROOTFS_BAD_LAYER',
    `layer ${layer}: media type "${mediaType}" declares ${expected === 'none' ? 'an uncompressed tar' : expected} but the blob's first bytes are ${what}`,
    { layer, mediaType, expected, detected: seen },
  );
}
