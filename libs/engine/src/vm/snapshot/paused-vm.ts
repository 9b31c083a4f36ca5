import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MonocoreError } from '../../errors/index.js';
import { checkVmStateSize, type VmStateDigest } from './vm-state-file.js';

/**
 * A paused VM on disk, in its state dir next to its writable disk (docs/SNAPSHOTS.md "Pause and
 * resume"): `paused.state` (QEMU's migration stream) and `paused.json` (below), written last, so
 * a VM is paused exactly when paused.json exists. Resume restores it into a QEMU of the same
 * machine shape, with the same disk, and removes both files.
 */
export interface PausedVmMeta {
  format: 1;
  /** sha256 of the normalised QEMU argv (qemu-args.ts machineShape): resume refuses another machine. */
  machine: string;
  /** The QEMU version it was saved by: another one may not read the stream. */
  qemu: string;
  state: VmStateDigest;
  pausedAt: string;
  saveMs: number;
}

export const pausedStatePath = (stateDir: string): string => join(stateDir, 'paused.state');
const pausedMetaPath = (stateDir: string): string => join(stateDir, 'paused.json');

export async function writePausedMeta(stateDir: string, meta: PausedVmMeta): Promise<void> {
  const tmp = `${pausedMetaPath(stateDir)}.tmp`;
  await writeFile(tmp, `${JSON.stringify(meta, null, 2)}\n`);
  await rename(tmp, pausedMetaPath(stateDir));
}

/** The paused VM of `stateDir`, checked (format, state file size), or a clear error. */
export async function readPausedMeta(stateDir: string): Promise<PausedVmMeta> {
  let meta: PausedVmMeta;
  try {
    meta = JSON.parse(await readFile(pausedMetaPath(stateDir), 'utf8')) as PausedVmMeta;
  } catch (err) {
    throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `no paused VM in ${stateDir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { stateDir });
  }
  if (meta.format !== 1 || typeof meta.machine !== 'string' || typeof meta.state?.sha256 !== 'string') {
    throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${pausedMetaPath(stateDir)} is not a paused VM record of this monocore`, { stateDir });
  }
  await checkVmStateSize(pausedStatePath(stateDir), meta.state);
  return meta;
}

/** After a resume (or when the VM is given up): the paused state is spent. */
export async function removePaused(stateDir: string): Promise<void> {
  await rm(pausedMetaPath(stateDir), { force: true });
  await rm(pausedStatePath(stateDir), { force: true });
}
