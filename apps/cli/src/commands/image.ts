import type { Command } from 'commander';
import { isMonocoreError } from '@monocore/engine/errors';
import { MonocoreHome } from '@monocore/engine/home';
import { ImageStore, formatPlatform, importImage, parsePlatform, type ImageRecord } from '@monocore/engine/oci';
import { asUsage } from './pull.js';
import { formatBytes, progressReporter } from './pull-progress.js';

interface JsonOpt {
  json?: boolean;
}

function out(json: boolean | undefined, data: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(data)}\n` : text.endsWith('\n') || text === '' ? text : `${text}\n`);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** What `image inspect --json` prints for one image. */
function inspectView(r: ImageRecord) {
  return {
    reference: r.reference,
    digest: r.manifestDigest,
    indexDigest: r.digest !== r.manifestDigest ? r.digest : undefined,
    platform: r.platform,
    mediaType: r.manifestMediaType,
    configDigest: r.configDigest,
    config: r.config,
    layers: r.layers,
    size: r.size,
    rootfs: r.rootfs,
    created: r.created,
    pulledAt: r.pulledAt,
    source: r.source,
  };
}

async function withJsonErrors(json: boolean | undefined, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (json && isMonocoreError(err)) process.stdout.write(`${JSON.stringify({ error: err.toJSON() })}\n`);
    throw err;
  }
}

export function registerImage(program: Command): void {
  const image = program.command('image').description('Manage local images (ls, inspect, rm, prune, import)');

  image
    .command('ls')
    .alias('list')
    .description('List local images')
    .option('--json', 'print the images as a JSON array')
    .action(async (opts: JsonOpt) => {
      const records = await new ImageStore(new MonocoreHome()).list();
      const rows = [['REFERENCE', 'PLATFORM', 'DIGEST', 'SIZE', 'PULLED']];
      for (const r of records) rows.push([r.reference, r.platform, r.manifestDigest.slice(7, 19), formatBytes(r.size), r.pulledAt.replace(/\.\d+Z$/, 'Z')]);
      out(opts.json, records.map(inspectView), records.length === 0 ? 'no images (monocore pull IMAGE)' : table(rows));
    });

  image
    .command('inspect')
    .description('Show an image: digest, platform, layers, config and the rootfs path')
    .argument('<image>', 'reference, digest or digest prefix')
    .option('--platform <os/arch[/variant]>', 'only this platform')
    .option('--json', 'print JSON (an array when several platforms match)')
    .action(async (query: string, opts: JsonOpt & { platform?: string }) =>
      withJsonErrors(opts.json, async () => {
        const platform = opts.platform ? asUsage(() => parsePlatform(opts.platform!)) : undefined;
        const hits = await new ImageStore(new MonocoreHome()).require(query, platform && formatPlatform(platform));
        const views = hits.map(inspectView);
        if (opts.json) {
          out(true, views.length === 1 ? views[0] : views, '');
          return;
        }
        const text = views
          .map((v) =>
            [
              `reference: ${v.reference}`,
              `digest:    ${v.digest}`,
              ...(v.indexDigest ? [`index:     ${v.indexDigest}`] : []),
              `platform:  ${v.platform}`,
              `size:      ${formatBytes(v.size)} in ${v.layers.length} layer(s)`,
              `rootfs:    ${v.rootfs}`,
              `entrypoint: ${JSON.stringify(v.config.entrypoint)}  cmd: ${JSON.stringify(v.config.cmd)}`,
              ...(v.config.workingDir ? [`workdir:   ${v.config.workingDir}`] : []),
              ...(v.config.user ? [`user:      ${v.config.user}`] : []),
              `env:       ${v.config.env.join(' ')}`,
              ...v.layers.map((l, i) => `layer ${i + 1}:   ${l.digest} ${formatBytes(l.size)} ${l.mediaType}`),
            ].join('\n'),
          )
          .join('\n\n');
        out(false, undefined, text);
      }),
    );

  image
    .command('rm')
    .alias('remove')
    .description('Remove images from the local list (their blobs and rootfs go at the next prune)')
    .argument('<images...>', 'references, digests or digest prefixes')
    .option('--json', 'print what was removed as JSON')
    .action(async (queries: string[], opts: JsonOpt) =>
      withJsonErrors(opts.json, async () => {
        const store = new ImageStore(new MonocoreHome());
        const removed: Array<{ reference: string; platform: string; digest: string }> = [];
        for (const q of queries) {
          for (const r of await store.remove(q)) removed.push({ reference: r.reference, platform: r.platform, digest: r.manifestDigest });
        }
        out(opts.json, { removed }, removed.map((r) => `removed ${r.reference} (${r.platform}) ${r.digest}`).join('\n'));
      }),
    );

  image
    .command('prune')
    .description('Delete blobs, partial downloads and rootfs directories no image references')
    .option('--json', 'print what was deleted as JSON')
    .action(async (opts: JsonOpt) => {
      const r = await new ImageStore(new MonocoreHome()).prune();
      const kept = r.keptInUse.length > 0 ? `\nkept ${r.keptInUse.length} rootfs dir(s) that running VMs use: ${r.keptInUse.map((d) => d.slice(7, 19)).join(', ')}` : '';
      out(opts.json, r, `deleted ${r.removedBlobs.length} blob(s) and ${r.removedRootfs.length} rootfs dir(s), freed ${formatBytes(r.freedBytes)}${kept}`);
    });

  image
    .command('import')
    .description('Import an OCI image layout directory or an oci-archive tarball (like docker load)')
    .argument('<path>', 'OCI layout directory or oci-archive .tar')
    .option('--name <reference>', 'record the image under this reference (default: from the layout, else localhost/<dir>:<tag>)')
    .option('--ref-name <tag>', 'import only the layout entry with this org.opencontainers.image.ref.name')
    .option('--platform <os/arch[/variant]>', "platform to pick from an index (default: this host's)")
    .option('--json', 'print the imported images as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(async (path: string, opts: JsonOpt & { name?: string; refName?: string; platform?: string; quiet?: boolean }) =>
      withJsonErrors(opts.json, async () => {
        if (opts.platform) asUsage(() => parsePlatform(opts.platform!));
        const progress = opts.quiet ? undefined : progressReporter(path);
        try {
          const imported = await asyncUsage(() =>
            importImage(path, {
              home: new MonocoreHome(),
              ...(opts.name ? { reference: opts.name } : {}),
              ...(opts.refName ? { tag: opts.refName } : {}),
              ...(opts.platform ? { platform: opts.platform } : {}),
              ...(progress ? { onProgress: (p) => progress.update(p) } : {}),
            }),
          );
          progress?.finish();
          out(opts.json, imported, imported.map((i) => `imported ${i.reference} (${i.platform}) ${i.manifestDigest}\nrootfs: ${i.rootfs}`).join('\n'));
        } finally {
          progress?.finish();
        }
      }),
    );
}

async function asyncUsage<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isMonocoreError(err, 'MC_OCI_INVALID_REFERENCE')) asUsage(() => { throw err; });
    throw err;
  }
}
