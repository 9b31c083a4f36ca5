import type { Command } from 'commander';
import { MonocoreError, isMonocoreError } from '@monocore/engine/errors';
import { MonocoreHome } from '@monocore/engine/home';
import { closeDefaultRegistryClient, parseImageReference, parsePlatform, pullImage } from '@monocore/engine/oci';
import { progressReporter } from './pull-progress.js';

interface PullOptions {
  platform?: string;
  json?: boolean;
  quiet?: boolean;
}

/** Turns bad user input (reference, platform) into a usage error: exit code 2. */
export function asUsage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isMonocoreError(err, 'MC_OCI_INVALID_REFERENCE') || isMonocoreError(err, 'MC_OCI_INVALID_PLATFORM')) {
      throw new MonocoreError('MC_USAGE', err.message, err.details);
    }
    throw err;
  }
}

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description('Pull an OCI image into the local store and unpack its rootfs')
    .argument('<image>', 'image reference, e.g. alpine, ghcr.io/o/r:tag, localhost:5000/x@sha256:…')
    .option('--platform <os/arch[/variant]>', "platform to pull from a multi-platform image (default: this host's)")
    .option('--json', 'print the result as JSON on stdout')
    .option('-q, --quiet', 'no progress output')
    .addHelpText(
      'after',
      '\nEnvironment: MONOCORE_HOME, MONOCORE_REGISTRY_MIRRORS ("docker.io=http://127.0.0.1:5000"),\n' +
        'MONOCORE_INSECURE_REGISTRIES ("host:port,…"), MONOCORE_REGISTRY_AUTH (JSON like docker\'s auths);\n' +
        'credentials are also read from ~/.docker/config.json.',
    )
    .action(async (image: string, opts: PullOptions) => {
      asUsage(() => parseImageReference(image));
      if (opts.platform !== undefined) asUsage(() => parsePlatform(opts.platform!));
      const home = new MonocoreHome();
      const progress = opts.quiet ? undefined : progressReporter(image);
      const started = Date.now();
      try {
        const pulled = await pullImage(image, {
          home,
          ...(opts.platform ? { platform: opts.platform } : {}),
          ...(progress ? { onProgress: (p) => progress.update(p) } : {}),
        });
        progress?.finish();
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ ...pulled, elapsedMs: Date.now() - started })}\n`);
        } else {
          process.stdout.write(`${pulled.reference} (${pulled.platform}) ${pulled.manifestDigest}\nrootfs: ${pulled.rootfs}\n`);
        }
      } catch (err) {
        progress?.finish();
        if (opts.json && isMonocoreError(err)) {
          process.stdout.write(`${JSON.stringify({ error: err.toJSON() })}\n`);
        }
        throw err;
      } finally {
        await closeDefaultRegistryClient();
      }
    });
}
