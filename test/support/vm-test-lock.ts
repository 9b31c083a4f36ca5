import { openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/**
 * A reader/writer lock between the test files of one checkout that boot VMs
 * (`node --test` runs two files at a time, always in sorted order). Ordinary VM
 * tests hold it shared, so they run together as before; the chaos soak holds it
 * exclusive: it waits for the VM tests already running and makes later ones
 * wait, so 20 VMs and a storm of faults never starve another file's boots.
 * flock(2) on `.monocore-test/vm-tests.lock`, held until the process exits.
 * Blocks the calling thread while it waits (call it before any test starts).
 */
let held: 'shared' | 'exclusive' | undefined;

export function holdVmTestLock(stateDir: string, mode: 'shared' | 'exclusive'): void {
  if (held) return; // one lock per process: a second flock on another descriptor would deadlock
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as { load(lib: string): { func(sig: string): (fd: number, op: number) => number } };
  const flock = koffi.load('libc.so.6').func('int flock(int fd, int op)');
  const fd = openSync(join(stateDir, 'vm-tests.lock'), 'a');
  const LOCK_SH = 1;
  const LOCK_EX = 2;
  if (flock(fd, mode === 'shared' ? LOCK_SH : LOCK_EX) !== 0) throw new Error(`flock(${mode}) on ${stateDir}/vm-tests.lock failed`);
  held = mode; // the descriptor stays open: the kernel releases the lock when the process ends
}
