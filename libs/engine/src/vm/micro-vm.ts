import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MonocoreError } from '../errors/index.js';
import type { HypervisorBackend, VmHandle } from './hypervisor-backend.js';
import { selectBackend } from './select-backend.js';
import { DEFAULT_GUEST_PATH, type VmExit, type VmNetwork, type VmSpec } from './vm-spec.js';

/**
 * The library API, in the spirit of the seed's `MicroVm::builder()`:
 *
 *   const vm = MicroVm.builder().rootPath('/path/to/rootfs').ramMib(512).execPath('/bin/true').build();
 *   await vm.start();
 *   const { exitCode } = await vm.wait();
 *
 * Unset fields get safe defaults: 1 vCPU, 512 MiB, no network, a throwaway
 * state dir (removed after the VM ends) and the backend selectBackend() picks.
 */
export class MicroVm {
  private handle?: VmHandle;
  private ownedStateDir?: string;

  private constructor(
    readonly spec: Readonly<Omit<VmSpec, 'stateDir'>> & { stateDir?: string },
    private readonly backendChoice?: HypervisorBackend,
  ) {}

  static builder(): MicroVmBuilder {
    return new MicroVmBuilder();
  }

  /** @internal used by the builder */
  static fromBuilder(spec: Omit<VmSpec, 'stateDir'> & { stateDir?: string }, backend?: HypervisorBackend): MicroVm {
    return new MicroVm(spec, backend);
  }

  /** Boots the VM; resolves once the guest reports the command started. */
  async start(): Promise<VmHandle> {
    if (this.handle) throw new MonocoreError('MC_VM_SPEC_INVALID', `vm ${this.spec.id} was already started`, { field: 'start' });
    const backend = this.backendChoice ?? (await selectBackend()).backend;
    let stateDir = this.spec.stateDir;
    if (!stateDir) {
      stateDir = await mkdtemp(join(tmpdir(), `microvm-${this.spec.id}-`));
      this.ownedStateDir = stateDir;
    }
    this.handle = await backend.start({ ...this.spec, stateDir });
    // Swallow here so an exec failure surfaces through wait(), not as an unhandled rejection.
    await this.handle.started.catch(() => {});
    return this.handle;
  }

  async wait(): Promise<VmExit> {
    if (!this.handle) throw new MonocoreError('MC_VM_SPEC_INVALID', `vm ${this.spec.id} has not been started`, { field: 'wait' });
    const exit = await this.handle.wait();
    if (this.ownedStateDir) await rm(this.ownedStateDir, { recursive: true, force: true });
    return exit;
  }

  stop(options?: { timeoutMs?: number }): Promise<VmExit> {
    if (!this.handle) throw new MonocoreError('MC_VM_SPEC_INVALID', `vm ${this.spec.id} has not been started`, { field: 'stop' });
    return this.handle.stop(options).finally(() => this.wait());
  }
}

let counter = 0;

export class MicroVmBuilder {
  private s: Omit<VmSpec, 'stateDir'> & { stateDir?: string } = {
    id: `microvm-${process.pid}-${++counter}`,
    rootfs: '',
    command: '',
    args: [],
    env: [`PATH=${DEFAULT_GUEST_PATH}`],
    cpus: 1,
    ramMib: 512,
    volumes: [],
    ports: [],
    network: { mode: 'none' },
  };
  private chosen?: HypervisorBackend;

  id(id: string): this { this.s.id = id; return this; }
  rootPath(path: string): this { this.s.rootfs = path; return this; }
  ramMib(mib: number): this { this.s.ramMib = mib; return this; }
  numVcpus(n: number): this { this.s.cpus = n; return this; }
  execPath(path: string): this { this.s.command = path; return this; }
  args(args: string[]): this { this.s.args = [...args]; return this; }
  /** Replaces the environment (KEY=value entries). */
  env(env: string[]): this { this.s.env = [...env]; return this; }
  workdir(dir: string): this { this.s.workdir = dir; return this; }
  hostname(name: string): this { this.s.hostname = name; return this; }
  volume(host: string, guest: string, readOnly = false): this { this.s.volumes.push({ host, guest, readOnly }); return this; }
  port(host: number, guest: number, bindAddress?: string): this {
    this.s.ports.push(bindAddress ? { host, guest, bindAddress } : { host, guest });
    return this;
  }
  network(net: VmNetwork): this { this.s.network = net; return this; }
  stateDir(dir: string): this { this.s.stateDir = dir; return this; }
  stdout(stream: NodeJS.WritableStream): this { this.s.stdout = stream; return this; }
  stderr(stream: NodeJS.WritableStream): this { this.s.stderr = stream; return this; }
  bootTimeoutMs(ms: number): this { this.s.bootTimeoutMs = ms; return this; }
  backend(backend: HypervisorBackend): this { this.chosen = backend; return this; }

  build(): MicroVm {
    if (!this.s.rootfs) throw new MonocoreError('MC_VM_SPEC_INVALID', 'MicroVm.builder(): rootPath() is required', { field: 'rootfs' });
    if (!this.s.command) throw new MonocoreError('MC_VM_SPEC_INVALID', 'MicroVm.builder(): execPath() is required', { field: 'command' });
    return MicroVm.fromBuilder({ ...this.s, args: [...this.s.args], env: [...this.s.env], volumes: [...this.s.volumes], ports: [...this.s.ports] }, this.chosen);
  }
}
