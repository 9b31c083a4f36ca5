// Builds real OCI image layouts with umoci (an independent tool), so the
// unpacker is checked against layers it did not craft itself.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export function sh(cmd: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  }
}

export interface LayoutImage {
  manifestDigest: string;
  layers: { digest: string; mediaType: string; size: number; path: string }[];
}

/** Reads a tag of an OCI layout (index.json → manifest → layer blob paths). */
export function readLayoutImage(layout: string, tag: string): LayoutImage {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!desc) throw new Error(`tag ${tag} not in ${layout}`);
  const blob = (d: string): string => join(layout, 'blobs', 'sha256', d.slice('sha256:'.length));
  const manifest = JSON.parse(readFileSync(blob(desc.digest), 'utf8')) as { layers: { digest: string; mediaType: string; size: number }[] };
  return { manifestDigest: desc.digest, layers: manifest.layers.map((l) => ({ ...l, path: blob(l.digest) })) };
}

/**
 * Creates `layout:tag` with umoci: `populate(rootfs)` for each layer in turn
 * (umoci unpack, change the tree, umoci repack); deleting a path in a later
 * step makes umoci emit a whiteout for it.
 */
export function umociImage(layout: string, tag: string, work: string, steps: ((rootfs: string) => void)[]): LayoutImage {
  sh('umoci', ['init', '--layout', layout]);
  sh('umoci', ['new', '--image', `${layout}:${tag}`]);
  steps.forEach((step, i) => {
    const bundle = join(work, `bundle-${i}`);
    sh('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
    step(join(bundle, 'rootfs'));
    sh('umoci', ['repack', '--image', `${layout}:${tag}`, bundle]);
  });
  return readLayoutImage(layout, tag);
}

/** umoci's own unpack of the image: the reference our rootfs is compared with. */
export function umociUnpack(layout: string, tag: string, bundle: string): string {
  sh('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
  return join(bundle, 'rootfs');
}
