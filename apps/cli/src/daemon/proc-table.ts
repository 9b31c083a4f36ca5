import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { MonocoreError } from '@monocore/engine/errors';

/** The fields of /proc/<pid>/stat the daemon's bookkeeping needs. */
export interface ProcStat {
  pid: number;
  /** R, S, D, … ; Z (zombie) and X (dead) count as gone. */
  state: string;
  session: number;
  /** Clock ticks after boot: with the pid it names one process, never a later one given the same pid. */
  startTime: number;
}

export async function procStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces or ")": split after the last ")".
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); session is field 6, starttime field 22.
  const session = Number(rest[3]);
  const startTime = Number(rest[19]);
  if (!rest[0] || !Number.isInteger(session) || !Number.isInteger(startTime)) return undefined;
  return { pid, state: rest[0], session, startTime };
}

/** Alive: exists, is not a zombie, and (when given) is the very process that started at `startTime`. */
export async function isRunning(pid: number, startTime?: number): Promise<boolean> {
  const stat = await procStat(pid);
  if (!stat || stat.state === 'Z' || stat.state === 'X') return false;
  return startTime === undefined || stat.startTime === startTime;
}

/** Live processes of session `sid` (the daemon is its session's leader: setsid). */
export async function sessionMembers(sid: number): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
  const stats = await Promise.all(pids.map((p) => procStat(p)));
  return stats.filter((s): s is ProcStat => s !== undefined && s.session === sid && s.state !== 'Z' && s.state !== 'X').map((s) => s.pid);
}

/** Waits until `check` is false, polling /proc (processes give no event a non-parent can wait on). */
export async function waitWhile(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (await check()) {
    if (performance.now() >= deadline) return false;
    await sleep(100);
  }
  return true;
}

/** kill(2) that ignores a process already gone; anything else (EPERM) is MC_DAEMON_STOP_FAILED. */
export function signalProcess(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return;
    throw new MonocoreError('MC_DAEMON_STOP_FAILED', `cannot send ${sig} to pid ${pid} (${code ?? String(err)})`, { pid });
  }
}

/**
 * Ends every process left in session `sid`: SIGTERM, then SIGKILL after `graceMs`.
 * Used once the daemon (the session's leader) is gone: what is left there is
 * its Redis or a QEMU it could not stop. A session id is not reused while any
 * process still carries it, so nothing outside the daemon's session is touched.
 * Returns how many processes had to be ended.
 */
export async function endSession(sid: number, graceMs: number): Promise<number> {
  const left = await sessionMembers(sid);
  if (left.length === 0) return 0;
  for (const pid of left) signalProcess(pid, 'SIGTERM');
  const occupied = async (): Promise<boolean> => (await sessionMembers(sid)).length > 0;
  if (!(await waitWhile(occupied, graceMs))) {
    for (const pid of await sessionMembers(sid)) signalProcess(pid, 'SIGKILL');
    if (!(await waitWhile(occupied, 5_000))) {
      const still = await sessionMembers(sid);
      throw new MonocoreError('MC_DAEMON_STOP_FAILED', `processes of the daemon's session ${sid} survive SIGKILL: ${still.join(', ')}`, { session: sid, pids: still });
    }
  }
  return left.length;
}
