/**
 * The shared HypervisorBackend conformance suite, run against LibkrunBackend
 * with the STUB libkrun (stub-libkrun.c) — NOT the real libkrun. Only the
 * "validation" group runs: the other groups need a guest that really executes
 * /bin/sh, which the stub cannot be. The host facts are those of a simulated
 * KVM host (this machine's KVM is kvm_pvm, where available() rightly says no;
 * libkrun-backend.test.ts checks that answer).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { LibkrunBackend, MonocoreHome, type VmSpec } from '@monocore/engine';
import { hypervisorBackendSuite, type CollectingStream } from '../conformance/hypervisor-backend.suite.js';
import { buildStubLibkrun } from './stub-libkrun.js';

class Collect extends Writable implements CollectingStream {
  private chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

const work = mkdtempSync(join(tmpdir(), 'mc-libkrun-conf-'));
const rootfs = join(work, 'rootfs');
mkdirSync(join(rootfs, 'bin'), { recursive: true });

const simulatedKvmHost = { platform: 'linux' as const, exists: (p: string) => p === '/dev/kvm' || p === '/usr/bin/unshare', canOpenRw: () => true, isRoot: true };
// available() boot-probes: the stub answers like a booted guest init whose command is missing (exit 127).
const backend = new LibkrunBackend({
  home: new MonocoreHome(join(work, 'home')),
  libkrunPath: buildStubLibkrun().full,
  host: simulatedKvmHost,
  env: { ...process.env, STUB_LIBKRUN_ENTER: 'exit:127' },
});

function spec(id: string, over: Partial<VmSpec> = {}): VmSpec & { stdout: Collect; stderr: Collect } {
  return {
    id,
    rootfs,
    command: '/bin/true',
    args: [],
    env: ['PATH=/bin'],
    cpus: 1,
    ramMib: 128,
    volumes: [],
    ports: [],
    stateDir: join(work, 'state', id),
    network: { mode: 'none' },
    ...over,
    stdout: new Collect(),
    stderr: new Collect(),
  };
}

hypervisorBackendSuite('libkrun (stub libkrun, simulated KVM host)', () => ({ backend, spec }), { groups: ['validation'] });

process.on('exit', () => rmSync(work, { recursive: true, force: true }));
