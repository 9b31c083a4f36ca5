import { z } from 'zod';
import { MonocoreError } from '../errors/index.js';
import { isDigest } from './digest.js';
import { CONFIG_TYPES, INDEX_TYPES, IMAGE_MANIFEST_TYPES, LAYER_TYPES } from './media-types.js';

/**
 * Schemas for what registries and image layouts send us. They are lenient about
 * extra fields (the specs allow them) and strict about what we rely on: digests,
 * sizes and media types. Registry responses are untrusted input.
 */
export const DigestSchema = z.string().refine(isDigest, { message: 'expected a sha256 digest (sha256:<64 hex>)' });

export const PlatformSchema = z.object({
  os: z.string().min(1),
  architecture: z.string().min(1),
  variant: z.string().optional(),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
});

export const DescriptorSchema = z.object({
  mediaType: z.string().min(1),
  digest: DigestSchema,
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: PlatformSchema.optional(),
});
export type Descriptor = z.infer<typeof DescriptorSchema>;

export const ImageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ImageManifest = z.infer<typeof ImageManifestSchema>;

export const ImageIndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(DescriptorSchema),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ImageIndex = z.infer<typeof ImageIndexSchema>;

export const ImageConfigSchema = z.object({
  created: z.string().optional(),
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  config: z
    .object({
      Env: z.array(z.string()).nullish(),
      Entrypoint: z.array(z.string()).nullish(),
      Cmd: z.array(z.string()).nullish(),
      WorkingDir: z.string().nullish(),
      User: z.string().nullish(),
      ExposedPorts: z.record(z.string(), z.unknown()).nullish(),
      Labels: z.record(z.string(), z.string()).nullish(),
      StopSignal: z.string().nullish(),
    })
    .nullish(),
  rootfs: z.object({ type: z.string(), diff_ids: z.array(z.string()) }).optional(),
});
export type ImageConfig = z.infer<typeof ImageConfigSchema>;

export type ParsedManifest =
  | { kind: 'index'; mediaType: string; index: ImageIndex }
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest };

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${what}: not valid JSON (${(err as Error).message})`, { what });
  }
}

function zodProblem(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`;
}

/**
 * Parses manifest bytes. The media type comes from the body's `mediaType` when
 * present (it must then agree with the Content-Type), else from the Content-Type.
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined, what: string): ParsedManifest {
  const json = parseJson(bytes, what);
  if (json === null || typeof json !== 'object') {
    throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${what}: expected a JSON object`, { what });
  }
  const obj = json as Record<string, unknown>;
  const bodyType = typeof obj.mediaType === 'string' ? obj.mediaType : undefined;
  const headerType = contentType?.split(';')[0]?.trim();
  let mediaType: string = bodyType ?? headerType ?? '';
  if (mediaType === '' || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
    // OCI allows omitting mediaType; tell an index from a manifest by shape.
    mediaType = (Array.isArray(obj.manifests) ? INDEX_TYPES[0] : IMAGE_MANIFEST_TYPES[0]) ?? '';
  }
  if (obj.schemaVersion === 1 || mediaType.startsWith('application/vnd.docker.distribution.manifest.v1')) {
    throw new MonocoreError(
      'MC_OCI_UNSUPPORTED_MEDIA_TYPE',
      `${what}: Docker schema 1 manifests are deprecated and not supported (media type ${mediaType})`,
      { what, mediaType },
    );
  }
  if (INDEX_TYPES.includes(mediaType)) {
    const r = ImageIndexSchema.safeParse(json);
    if (!r.success) throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${what}: invalid image index: ${zodProblem(r.error)}`, { what });
    return { kind: 'index', mediaType: mediaType, index: r.data };
  }
  if (IMAGE_MANIFEST_TYPES.includes(mediaType)) {
    const r = ImageManifestSchema.safeParse(json);
    if (!r.success) throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${what}: invalid image manifest: ${zodProblem(r.error)}`, { what });
    const m = r.data;
    if (!CONFIG_TYPES.includes(m.config.mediaType)) {
      throw new MonocoreError(
        'MC_OCI_UNSUPPORTED_MEDIA_TYPE',
        `${what}: config media type "${m.config.mediaType}" is not a container image config (is this an artifact, not an image?)`,
        { what, mediaType: m.config.mediaType },
      );
    }
    m.layers.forEach((l, i) => {
      if (!LAYER_TYPES.includes(l.mediaType)) {
        throw new MonocoreError('MC_OCI_UNSUPPORTED_MEDIA_TYPE', `${what}: layers[${i}] (${l.digest}) has unsupported media type "${l.mediaType}"`, {
          what,
          index: i,
          digest: l.digest,
          mediaType: l.mediaType,
        });
      }
    });
    return { kind: 'manifest', mediaType: mediaType, manifest: m };
  }
  throw new MonocoreError('MC_OCI_UNSUPPORTED_MEDIA_TYPE', `${what}: unsupported manifest media type "${mediaType}"`, { what, mediaType });
}

export function parseImageConfig(bytes: Uint8Array, what: string): ImageConfig {
  const r = ImageConfigSchema.safeParse(parseJson(bytes, what));
  if (!r.success) throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${what}: invalid image config: ${zodProblem(r.error)}`, { what });
  return r.data;
}
