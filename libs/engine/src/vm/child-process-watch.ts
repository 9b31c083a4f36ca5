import type { ChildProcess } from 'node:child_process';
import type { MonocoreHome } from '../home/index.js';
import { procStartTime, writePidRecord, type VmPidRecord } from './orphans.js';
import type { VmExit } from './vm-spec.js';

/** How the VM process ended, as Node reported it. */
export interface ChildGone {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildProcessWatchOptions {
  /**
   * The event that means "gone": 'exit' (the process ended) or 'close' (it
   * ended and its stdio streams closed). Each backend keeps its own choice.
   */
  goneOn: 'exit' | 'close';
  /** Told about a spawn failure just before `gone` resolves with no code and no signal. */
  onSpawnError: (e: Error) => void;
  home: MonocoreHome;
  /** What goes into the pid record besides the pids and their start times. */
  record: Pick<VmPidRecord, 'id' | 'backend' | 'runtimeDir'>;
}

/**
 * The lifecycle every VM handle keeps around its hypervisor process: the
 * started/exit promises it settles, when the process has spawned, when it is
 * gone, and the pid record (child and supervisor start times) that lets a
 * restarted supervisor reap it as an orphan (see orphans.ts). One copy, so the
 * QEMU and libkrun backends cannot drift apart on orphan protection.
 */
export class ChildProcessWatch {
  readonly started: Promise<void>;
  readonly exit: Promise<VmExit>;
  readonly gone: Promise<ChildGone>;
  readonly spawned: Promise<void>;
  resolveStarted!: () => void;
  rejectStarted!: (e: Error) => void;
  resolveExit!: (e: VmExit) => void;
  /** The pid record's path, once the process has spawned and the record is written. */
  pidFile?: string;

  constructor(child: ChildProcess, o: ChildProcessWatchOptions) {
    this.started = new Promise<void>((resolve, reject) => {
      this.resolveStarted = resolve;
      this.rejectStarted = reject;
    });
    this.started.catch(() => {}); // callers that never await it must not crash the process
    this.exit = new Promise<VmExit>((resolve) => (this.resolveExit = resolve));

    this.gone = new Promise<ChildGone>((resolve) => {
      child.once(o.goneOn, (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal }));
      child.once('error', (e) => {
        o.onSpawnError(e);
        resolve({ code: null, signal: null });
      });
    });
    this.spawned = new Promise<void>((resolve) => {
      if (child.pid !== undefined) resolve();
      child.once('spawn', () => resolve());
      child.once('error', () => resolve());
    });
    void this.spawned.then(() => {
      if (child.pid === undefined) return;
      const startTime = procStartTime(child.pid);
      const supStart = procStartTime(process.pid);
      if (startTime && supStart) {
        this.pidFile = writePidRecord(o.home, {
          id: o.record.id, pid: child.pid, startTime, supervisorPid: process.pid, supervisorStartTime: supStart,
          ...(o.record.runtimeDir !== undefined ? { runtimeDir: o.record.runtimeDir } : {}),
          backend: o.record.backend,
        });
      }
    });
  }
}
