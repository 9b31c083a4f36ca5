// Builds test images with independent tools (umoci, skopeo), never with monocore's
// own code, and pushes them to the loopback test registry.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { maxBuffer: 64 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  }
}

export interface ImageSpec {
  /** Start from this existing tag of the same layout (its layers are shared) instead of an empty image. */
  from?: string;
  /** One map per layer: path inside the image -> file content. */
  layers: Array<Record<string, string>>;
  arch?: string;
  variant?: string;
  os?: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
}

/** A scratch directory removed by cleanup(). */
export async function scratch(prefix = 'mc-oci-'): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Creates (or extends) an OCI layout at `layout` with `tag` built from `spec` using umoci. */
export async function buildImage(layout: string, tag: string, spec: ImageSpec): Promise<void> {
  const { stat } = await import('node:fs/promises');
  const exists = await stat(join(layout, 'oci-layout')).then(() => true, () => false);
  if (!exists) await run('umoci', ['init', '--layout', layout]);
  if (spec.from) await run('umoci', ['tag', '--image', `${layout}:${spec.from}`, tag]);
  else await run('umoci', ['new', '--image', `${layout}:${tag}`]);
  // umoci 0.4.7's `insert` writes a truncated tar (no end-of-archive blocks), so
  // each layer is made the documented way: unpack, change the bundle, repack.
  const rootless = process.getuid?.() !== 0 ? ['--rootless'] : [];
  for (const files of spec.layers) {
    const bundle = await mkdtemp(join(tmpdir(), 'mc-bundle-'));
    await rm(bundle, { recursive: true, force: true });
    try {
      await run('umoci', ['unpack', ...rootless, '--image', `${layout}:${tag}`, bundle]);
      for (const [path, content] of Object.entries(files)) {
        const p = join(bundle, 'rootfs', path);
        await mkdir(dirname(p), { recursive: true });
        await writeFile(p, content);
      }
      await run('umoci', ['repack', '--image', `${layout}:${tag}`, bundle]);
    } finally {
      await rm(bundle, { recursive: true, force: true });
    }
  }
  const args = ['config', '--image', `${layout}:${tag}`, '--os', spec.os ?? 'linux', '--architecture', spec.arch ?? 'amd64'];
  for (const e of spec.entrypoint ?? []) args.push('--config.entrypoint', e);
  for (const c of spec.cmd ?? []) args.push('--config.cmd', c);
  for (const e of spec.env ?? []) args.push('--config.env', e);
  if (spec.workingDir) args.push('--config.workingdir', spec.workingDir);
  if (spec.user) args.push('--config.user', spec.user);
  await run('umoci', args);
  if (spec.variant) await setVariant(layout, tag, spec.variant);
}

/** umoci has no --variant flag: rewrite the config with the variant (test-side JSON, independent of monocore). */
async function setVariant(layout: string, tag: string, variant: string): Promise<void> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; size: number; annotations?: Record<string, string> }> };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`tag ${tag} not in ${layout}`);
  const manifest = JSON.parse(await readBlob(layout, entry.digest)) as { config: { digest: string; size: number } };
  const config = JSON.parse(await readBlob(layout, manifest.config.digest)) as Record<string, unknown>;
  config.variant = variant;
  manifest.config = { ...manifest.config, ...(await writeBlob(layout, JSON.stringify(config))) };
  const m = await writeBlob(layout, JSON.stringify(manifest));
  entry.digest = m.digest;
  entry.size = m.size;
  await writeFile(join(layout, 'index.json'), JSON.stringify(index));
}

export async function readBlob(layout: string, digest: string): Promise<string> {
  return readFile(join(layout, 'blobs', 'sha256', digest.slice(7)), 'utf8');
}

export async function writeBlob(layout: string, content: string): Promise<{ digest: string; size: number }> {
  const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
  await writeFile(join(layout, 'blobs', 'sha256', digest.slice(7)), content);
  return { digest, size: Buffer.byteLength(content) };
}

export interface LayoutEntry {
  digest: string;
  size: number;
  mediaType: string;
}

/** The descriptor of `tag` in a layout's index.json. */
export async function layoutEntry(layout: string, tag: string): Promise<LayoutEntry> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<LayoutEntry & { annotations?: Record<string, string> }>;
  };
  const e = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!e) throw new Error(`tag ${tag} not in ${layout}`);
  return { digest: e.digest, size: e.size, mediaType: e.mediaType };
}

/**
 * Adds an OCI image index under `indexTag` referencing the manifests of `entries`
 * (hand-written JSON: umoci builds images, not indexes; skopeo then pushes it).
 * `attestation` adds a BuildKit-style attestation entry, which pullers must skip.
 */
export async function buildIndex(
  layout: string,
  indexTag: string,
  entries: Array<{ tag: string; os: string; architecture: string; variant?: string }>,
  attestationOf?: string,
): Promise<void> {
  const manifests: unknown[] = [];
  for (const e of entries) {
    const d = await layoutEntry(layout, e.tag);
    manifests.push({ ...d, platform: { os: e.os, architecture: e.architecture, ...(e.variant ? { variant: e.variant } : {}) } });
  }
  if (attestationOf) {
    const d = await layoutEntry(layout, attestationOf);
    manifests.push({
      ...d,
      platform: { os: 'unknown', architecture: 'unknown' },
      annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': d.digest },
    });
  }
  const blob = await writeBlob(layout, JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }));
  const indexPath = join(layout, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: unknown[] };
  index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', ...blob, annotations: { 'org.opencontainers.image.ref.name': indexTag } });
  await writeFile(indexPath, JSON.stringify(index));
}

/**
 * Tags `newTag` as a copy of `tag` whose layers are re-encoded with the gzip/zstd
 * CLIs: 'zstd' (…tar+zstd) or 'none' (plain …tar). The uncompressed tars, hence the
 * config's diff_ids, stay the same.
 */
export async function recompressImage(layout: string, tag: string, newTag: string, to: 'zstd' | 'none'): Promise<void> {
  const entry = await layoutEntry(layout, tag);
  const manifest = JSON.parse(await readBlob(layout, entry.digest)) as { layers: Array<{ mediaType: string; digest: string; size: number }> };
  for (const layer of manifest.layers) {
    const src = join(layout, 'blobs', 'sha256', layer.digest.slice(7));
    const tmp = join(layout, `tmp-${randomBytes(4).toString('hex')}`);
    await run('sh', ['-c', to === 'zstd' ? `gzip -dc '${src}' | zstd -q -3 -o '${tmp}'` : `gzip -dc '${src}' > '${tmp}'`]);
    const bytes = await readFile(tmp);
    await rm(tmp);
    const blob = { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
    await writeFile(join(layout, 'blobs', 'sha256', blob.digest.slice(7)), bytes);
    Object.assign(layer, blob, { mediaType: to === 'zstd' ? 'application/vnd.oci.image.layer.v1.tar+zstd' : 'application/vnd.oci.image.layer.v1.tar' });
  }
  const m = await writeBlob(layout, JSON.stringify(manifest));
  const indexPath = join(layout, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: unknown[] };
  index.manifests.push({ mediaType: entry.mediaType, ...m, annotations: { 'org.opencontainers.image.ref.name': newTag } });
  await writeFile(indexPath, JSON.stringify(index));
}

/** skopeo copy oci:LAYOUT:TAG docker://REGISTRY/REPO:DEST_TAG */
export async function pushImage(layout: string, tag: string, dest: string, opts: { format?: 'oci' | 'v2s2'; all?: boolean } = {}): Promise<void> {
  const args = ['copy', '--quiet', '--dest-tls-verify=false'];
  if (opts.all) args.push('--all');
  if (opts.format) args.push('--format', opts.format);
  args.push(`oci:${layout}:${tag}`, `docker://${dest}`);
  await run('skopeo', args);
}

/**
 * Pushes `tag` of a layout with plain distribution-API calls (monolithic blob
 * uploads + manifest PUT), byte for byte: skopeo insists on compressing plain-tar
 * layers for a registry destination.
 */
export async function pushLayoutVerbatim(layout: string, tag: string, registry: string, repo: string, destTag: string): Promise<void> {
  const entry = await layoutEntry(layout, tag);
  const manifestText = await readBlob(layout, entry.digest);
  const manifest = JSON.parse(manifestText) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
    const start = await fetch(`http://${registry}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start for ${d}: HTTP ${start.status}`);
    const loc = new URL(start.headers.get('location')!, `http://${registry}`);
    loc.searchParams.set('digest', d);
    const body = await readFile(join(layout, 'blobs', 'sha256', d.slice(7)));
    const put = await fetch(loc, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`upload of ${d}: HTTP ${put.status} ${await put.text()}`);
  }
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${destTag}`, {
    method: 'PUT',
    body: manifestText,
    headers: { 'content-type': entry.mediaType },
  });
  if (res.status !== 201) throw new Error(`manifest PUT: HTTP ${res.status} ${await res.text()}`);
}

/** A fresh repository name, so tests never see each other's tags. */
export function uniqueRepo(name: string): string {
  return `monocore-test/${name}-${randomBytes(4).toString('hex')}`;
}

/** Raw manifest as the registry serves it (curl-free: Node's fetch on loopback). */
export async function registryManifest(registry: string, repo: string, ref: string, accept: string): Promise<{ mediaType: string; body: string; digest: string }> {
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${ref}`, { headers: { accept } });
  if (!res.ok) throw new Error(`GET manifest ${repo}:${ref}: HTTP ${res.status}`);
  const body = await res.text();
  return { mediaType: res.headers.get('content-type') ?? '', body, digest: res.headers.get('docker-content-digest') ?? '' };
}

export { run };
