import { readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { MonocoreHome } from '../home/index.js';

/**
 * Pid files of running hypervisor processes (`<home>/run/vm-<id>-<pid>.json`).
 * The first line of defence against orphans is the kernel's parent-death signal
 * (QEMU is started through `setpriv --pdeathsig KILL`); these records are the
 * second: a supervisor restarted after a crash calls cleanupOrphans() and kills
 * whatever its dead predecessor left behind.
 */
export interface VmPidRecord {
  id: string;
  pid: number;
  /** /proc/<pid>/stat start time: protects against killing a recycled pid. */
  startTime: string;
  supervisorPid: number;
  supervisorStartTime: string;
  /** Host-side runtime dir (sockets) to remove with the VM. */
  runtimeDir?: string;
  backend: string;
}

/** The VM id a spare's QEMU runs under until a start adopts it (qemu-backend.ts makeSpare). */
export const SPARE_ID = /^spare-[0-9a-f]+$/;

export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime), counted after the ")" that closes the comm field.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

const alive = (pid: number, startTime: string): boolean => procStartTime(pid) === startTime;

export function pidFilePath(home: MonocoreHome, id: string, pid: number): string {
  return join(home.runDir, `vm-${id}-${pid}.json`);
}

/** The VM id and pid a run-dir file name stands for (pidFilePath's format), or undefined for any other file. */
export function parsePidFileName(name: string): { id: string; pid: number } | undefined {
  const m = /^vm-(.+)-(\d+)\.json$/.exec(name);
  return m ? { id: m[1]!, pid: Number(m[2]) } : undefined;
}

export function writePidRecord(home: MonocoreHome, rec: VmPidRecord): string {
  mkdirSync(home.runDir, { recursive: true });
  const file = pidFilePath(home, rec.id, rec.pid);
  writeFileSync(`${file}.tmp`, JSON.stringify(rec));
  renameSync(`${file}.tmp`, file);
  return file;
}

export function removePidRecord(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already removed
  }
}

export interface OrphanCleanup {
  /** Hypervisor processes killed. */
  killed: Array<{ id: string; pid: number }>;
  /** Stale records removed (process already gone). */
  removed: number;
  /** Records left alone because their supervisor is still alive. */
  kept: number;
}

/**
 * Kills hypervisor processes whose supervising process is gone and removes
 * stale records. Records owned by a live supervisor (this process included)
 * are left alone, so several workers may share one MONOCORE_HOME.
 */
export function cleanupOrphans(home: MonocoreHome): OrphanCleanup {
  const result: OrphanCleanup = { killed: [], removed: 0, kept: 0 };
  let names: string[];
  try {
    names = readdirSync(home.runDir);
  } catch {
    return result;
  }
  for (const name of names) {
    if (!parsePidFileName(name)) continue;
    const file = join(home.runDir, name);
    let rec: VmPidRecord;
    try {
      rec = JSON.parse(readFileSync(file, 'utf8')) as VmPidRecord;
    } catch {
      continue; // being written
    }
    if (alive(rec.supervisorPid, rec.supervisorStartTime)) {
      result.kept++;
      continue;
    }
    if (alive(rec.pid, rec.startTime)) {
      try {
        process.kill(rec.pid, 'SIGKILL');
        result.killed.push({ id: rec.id, pid: rec.pid });
      } catch {
        // exited meanwhile
      }
    } else {
      result.removed++;
    }
    if (rec.runtimeDir) rmSync(rec.runtimeDir, { recursive: true, force: true });
    // A spare's own dir (its writable disk until a start adopts it): nothing else removes it.
    if (SPARE_ID.test(rec.id)) rmSync(join(home.root, 'spares', rec.id), { recursive: true, force: true });
    removePidRecord(file);
  }
  return result;
}
