import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The on-disk layout of one host's state (`MONOCORE_HOME`, default ~/.monocore).
 * Every module asks this class for paths instead of joining strings itself, so
 * the tree below is the single source of truth:
 *
 *   oci/blobs/sha256/<hex>          content-addressed blobs (layers, configs, manifests)
 *   oci/ingest/<key>/               in-flight downloads (resumable, never read as complete)
 *   oci/images/<image-key>.json     image records: reference -> manifest digest, config, layers
 *   oci/leases/<pid>-<id>.json      digests an in-flight pull needs (prune keeps them)
 *   rootfs/images/<digest-hex>/     unpacked read-only rootfs, one per image (by manifest digest)
 *   services/<name>/                per-service writable layer and VM files
 *   sandboxes/<id>/                 per-sandbox writable disk and VM files (deleted when it ends)
 *   run/                            pid files, sockets of running VMs; daemon.json + daemon.lock
 *                                   (the local daemon the CLI starts, apps/cli/src/daemon)
 *   log/<name>.stdout.log …         service logs
 *   kernel/                         guest kernel and initramfs cache
 *   tmp/                            scratch space on the same filesystem (atomic renames)
 */
export class MonocoreHome {
  readonly root: string;

  constructor(root: string = MonocoreHome.defaultRoot()) {
    this.root = resolve(root);
  }

  static defaultRoot(env: NodeJS.ProcessEnv = process.env): string {
    return env.MONOCORE_HOME && env.MONOCORE_HOME.length > 0 ? env.MONOCORE_HOME : join(homedir(), '.monocore');
  }

  get ociDir(): string { return join(this.root, 'oci'); }
  get blobsDir(): string { return join(this.root, 'oci', 'blobs'); }
  get ingestDir(): string { return join(this.root, 'oci', 'ingest'); }
  get imagesDir(): string { return join(this.root, 'oci', 'images'); }
  /** Leases of in-flight pulls: blobs they name are kept by `image prune`. */
  get leasesDir(): string { return join(this.root, 'oci', 'leases'); }
  get imageRootfsDir(): string { return join(this.root, 'rootfs', 'images'); }
  get servicesDir(): string { return join(this.root, 'services'); }
  get sandboxesDir(): string { return join(this.root, 'sandboxes'); }
  get runDir(): string { return join(this.root, 'run'); }
  get logDir(): string { return join(this.root, 'log'); }
  get kernelDir(): string { return join(this.root, 'kernel'); }
  get tmpDir(): string { return join(this.root, 'tmp'); }
  /** Host-level registry settings: mirrors, insecure registries, credentials (docs/OCI.md). */
  get registriesFile(): string { return join(this.root, 'registries.toml'); }

  serviceDir(name: string): string { return join(this.servicesDir, name); }
  sandboxDir(id: string): string { return join(this.sandboxesDir, id); }
  /** Written (0600) by `monocore serve`: the local CLI's credential, trusted like a local config file (apps/api). */
  get apiLocalTokenPath(): string { return join(this.root, 'run', 'api-local.token'); }
  /** Redis data of the Redis `monocore serve` embeds when no MONOCORE_REDIS_URL is given. */
  get embeddedRedisDir(): string { return join(this.root, 'redis'); }
  /** The record (pid, URL) of the local daemon the CLI started, and the lock its starters take. */
  get daemonRecordPath(): string { return join(this.root, 'run', 'daemon.json'); }
  get daemonLockPath(): string { return join(this.root, 'run', 'daemon.lock'); }
  /** The daemon's stdout and stderr (serve's human log lines, and anything it prints on a crash). */
  get daemonLogPath(): string { return join(this.root, 'log', 'daemon.log'); }
}
