import type { RuntimeConfig } from './runtime-config.js';

/**
 * Image records: which manifest a reference resolved to for a platform, with the
 * config and layers needed to boot it without reading blobs again. One JSON file
 * per (reference, platform) under oci/images/, written atomically (image-store.ts).
 */
export interface ImageRecord {
  /** Normalised reference, e.g. docker.io/library/alpine:latest (or name@sha256:...). */
  reference: string;
  /** "os/arch[/variant]". */
  platform: string;
  /** What the reference resolved to: an index (multi-platform) or the manifest itself. */
  digest: string;
  /** The platform's image manifest: the image id (its rootfs is keyed by it). */
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  config: RuntimeConfig;
  layers: Array<{ digest: string; mediaType: string; size: number }>;
  /** Sum of the (compressed) layer sizes. */
  size: number;
  rootfs: string;
  /** Every blob the record keeps alive (manifest(s), config, layers). */
  blobs: string[];
  created?: string;
  pulledAt: string;
  source: 'registry' | 'import';
}

/**
 * Checks a parsed record file field by field; the error names the first bad field. Written by
 * hand, not with zod: `monocore run` reads a record on every start, and loading zod costs ~0.1 s
 * of its start-up (bench/RESULTS.md "fast start").
 */
export function checkImageRecord(value: unknown): { ok: true; record: ImageRecord } | { ok: false; error: string } {
  const fail = (field: string, want: string): { ok: false; error: string } => ({ ok: false, error: `${field}: expected ${want}` });
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (!isObject(value)) return fail('record', 'an object');
  for (const f of ['reference', 'platform', 'digest', 'manifestDigest', 'manifestMediaType', 'configDigest', 'rootfs', 'pulledAt'] as const) {
    if (typeof value[f] !== 'string') return fail(f, 'a string');
  }
  if (value.created !== undefined && typeof value.created !== 'string') return fail('created', 'a string');
  if (typeof value.size !== 'number') return fail('size', 'a number');
  if (value.source !== 'registry' && value.source !== 'import') return fail('source', '"registry" or "import"');
  if (!isStrings(value.blobs)) return fail('blobs', 'an array of strings');
  const c = value.config;
  if (!isObject(c)) return fail('config', 'an object');
  for (const f of ['env', 'entrypoint', 'cmd'] as const) if (!isStrings(c[f])) return fail(`config.${f}`, 'an array of strings');
  for (const f of ['workingDir', 'user'] as const) if (c[f] !== undefined && typeof c[f] !== 'string') return fail(`config.${f}`, 'a string');
  if (!Array.isArray(value.layers)) return fail('layers', 'an array');
  for (const [i, l] of value.layers.entries()) {
    if (!isObject(l) || typeof l.digest !== 'string' || typeof l.mediaType !== 'string' || typeof l.size !== 'number') {
      return fail(`layers[${i}]`, '{digest, mediaType, size}');
    }
  }
  return { ok: true, record: value as unknown as ImageRecord };
}
