/**
 * Shared fixtures for the real-boot VM tests: the test image's rootfs (unpacked
 * with umoci — an independent tool, not our unpacker), the guest kernel dir, and
 * a QemuBackend with a private MONOCORE_HOME. Missing prerequisites fail loudly.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { closeDefaultRegistryClient, MonocoreHome, pullImage, QemuBackend, type GuestAgent, type QemuVmHandle, type VmSpec } from '@monocore/engine';
import { holdVmTestLock } from '../support/vm-test-lock.js';

function need(name: string): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run \`bash scripts/test-services.sh start && . .monocore-test/env.sh\` (or npm test)`);
  }
  return v;
}

export function kernelDir(): string {
  // Every file that boots VMs gets here first: it runs beside other VM tests, never beside an
  // exclusive one (the chaos soak, the guest stress tests: test/support/vm-test-lock.ts).
  holdVmTestLock(stateRoot(), 'shared');
  return need('MONOCORE_TEST_KERNEL_DIR');
}

/**
 * For a file whose guests are pushed to their limits (a fork bomb, a guest racing init for the
 * agent's port): it waits for the VM tests already running and holds the others off, so what it
 * measures is its own guests, not the machine's other load. Call it at the top of the file.
 */
export function aloneAmongVmTests(): void {
  holdVmTestLock(stateRoot(), 'exclusive');
}

const stateRoot = (): string => process.env.MONOCORE_TEST_STATE_DIR ?? resolve('.monocore-test');

/** The test image (busybox-static) unpacked by skopeo + umoci; cached per reference. */
export function testRootfs(): string {
  const image = need('MONOCORE_TEST_IMAGE');
  const key = createHash('sha256').update(image).digest('hex').slice(0, 16);
  const dir = join(stateRoot(), 'vm-rootfs', key);
  const rootfs = join(dir, 'rootfs');
  if (existsSync(rootfs)) return rootfs;
  mkdirSync(join(stateRoot(), 'vm-rootfs'), { recursive: true });
  const work = mkdtempSync(join(stateRoot(), 'vm-rootfs', '.tmp-'));
  execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${image}`, `oci:${work}/layout:latest`], { stdio: 'inherit' });
  execFileSync('umoci', ['unpack', '--image', `${work}/layout:latest`, `${work}/bundle`], { stdio: 'inherit' });
  try {
    renameSync(`${work}/bundle`, dir);
  } catch {
    // a concurrent test process won the race
  }
  rmSync(work, { recursive: true, force: true });
  return rootfs;
}

const created: string[] = [];
// Temp dirs (state dirs with sparse disks, volumes) go when the test process ends.
process.once('exit', () => {
  for (const d of created) rmSync(d, { recursive: true, force: true });
});

export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `mc-${prefix}-`));
  created.push(d);
  return d;
}

let home: MonocoreHome | undefined;
/** One MONOCORE_HOME for the test process (initramfs cache, run dir). */
export function testHome(): MonocoreHome {
  home ??= new MonocoreHome(join(stateRoot(), 'vm-home'));
  return home;
}

export function backend(extra: ConstructorParameters<typeof QemuBackend>[0] = {}): QemuBackend {
  return new QemuBackend({ home: testHome(), kernelDir: kernelDir(), bootTimeoutMs: 60_000, ...extra });
}

/** A writable stream collecting everything into a string. */
export class Collect extends Writable {
  chunks: Buffer[] = [];
  private waiters: Array<{ re: RegExp; resolve: () => void }> = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    const text = this.text;
    this.waiters = this.waiters.filter((w) => (w.re.test(text) ? (w.resolve(), false) : true));
    cb();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  /** Resolves once everything written so far matches `re` (the guest printed it). */
  until(re: RegExp): Promise<void> {
    if (re.test(this.text)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ re, resolve }));
  }
}

export function spec(id: string, over: Partial<VmSpec> = {}): VmSpec & { stdout: Collect; stderr: Collect } {
  const stdout = new Collect();
  const stderr = new Collect();
  return {
    id,
    rootfs: testRootfs(),
    command: '/bin/true',
    args: [],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    cpus: 1,
    ramMib: 192,
    volumes: [],
    ports: [],
    stateDir: tempDir(`st-${id}`),
    network: { mode: 'none' },
    bootTimeoutMs: 60_000,
    ...over,
    stdout,
    stderr,
  } as VmSpec & { stdout: Collect; stderr: Collect };
}

/**
 * A private MONOCORE_HOME with the test image pulled into its store (templates and spares key on
 * the store's image id), sharing the test process's kernel dir (initramfs cache).
 */
export async function imageStoreHome(prefix: string): Promise<{ home: MonocoreHome; rootfs: string; imageId: string }> {
  const home = new MonocoreHome(tempDir(prefix));
  mkdirSync(home.root, { recursive: true });
  mkdirSync(testHome().kernelDir, { recursive: true });
  symlinkSync(testHome().kernelDir, home.kernelDir);
  const pulled = await pullImage(need('MONOCORE_TEST_IMAGE'), { home });
  await closeDefaultRegistryClient();
  return { home, rootfs: pulled.rootfs, imageId: pulled.manifestDigest };
}

/** A 256 MiB sandbox of `rootfs` as the template tests start them: `WHO=<id>`, workdir /tmp. */
export function templateSandbox(rootfs: string, id: string, over: Partial<VmSpec> = {}): VmSpec {
  return spec(id, { rootfs, sandbox: true, command: '', args: [], env: ['PATH=/bin', `WHO=${id}`], workdir: '/tmp', ramMib: 256, diskMib: 256, ...over });
}

/** Starts a VM, adds it to `vms` (for the test's after hook to kill), and waits for its agent. */
export async function startWithAgent(qemu: QemuBackend, vms: QemuVmHandle[], s: VmSpec): Promise<{ vm: QemuVmHandle; a: GuestAgent }> {
  const vm = await qemu.start(s);
  vms.push(vm);
  await vm.started;
  return { vm, a: await vm.agent() };
}
