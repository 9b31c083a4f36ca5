import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, open, rename, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { MonocoreError } from '@monocore/engine/errors';
import { MonocoreHome } from '@monocore/engine/home';
import { HostLock } from '@monocore/engine/rootfs';
import { VERSION } from '@monocore/engine/version';
import { defaultApiPort } from '../api/default-api-url.js';
import { readDaemonRecord, removeDaemonRecord, writeDaemonRecord, type DaemonRecord } from './daemon-record.js';
import { endSession, isRunning, procStat, signalProcess, waitWhile } from './proc-table.js';

/**
 * Where the daemon is in its life, as seen from outside:
 *   absent        no record: none was started, or it was stopped
 *   stale         a record whose process is gone (a crash, a kill -9, a reboot): the next start replaces it
 *   unresponsive  the process runs but /healthz does not answer (still starting, or hung)
 *   running       the process runs and /healthz answers
 */
export type DaemonPhase = 'absent' | 'stale' | 'unresponsive' | 'running';

export interface DaemonState {
  phase: DaemonPhase;
  record?: DaemonRecord;
  /** Why a record is stale. */
  why?: string;
}

export interface StopResult {
  /** The phase found before stopping. */
  before: DaemonPhase;
  pid?: number;
  /** The daemon ignored SIGTERM for the whole grace time and was SIGKILLed. */
  forced: boolean;
  /** Processes of its session (Redis, QEMU) that outlived it and were ended. */
  leftovers: number;
}

/** serve's start: Redis, the worker's backend probe, then the API; minutes only on a very loaded machine. */
const DEFAULT_START_TIMEOUT_MS = 120_000;
/** serve stops every VM before it exits (each a guest shutdown, then SIGKILL after QEMU's own grace). */
const DEFAULT_STOP_TIMEOUT_MS = 120_000;
/** daemon.log becomes daemon.log.1 at a start once larger than this. */
const LOG_ROTATE_BYTES = 50 * 1024 * 1024;
/** The CLI's own entry point: the daemon is `monocore serve` run by the same build. */
const CLI_MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

/**
 * The local all-in-one daemon (`monocore serve`: API + worker + puller with
 * its embedded Redis, state and logs under MONOCORE_HOME) that API commands
 * start by themselves. One per MONOCORE_HOME: starters serialise on a flock
 * (run/daemon.lock), so two commands racing start one daemon; run/daemon.json
 * records which process it is. It runs detached in its own session (setsid)
 * with stdout and stderr in log/daemon.log, so it outlives the command that
 * started it and everything it spawns can be found and stopped with it.
 */
export class LocalDaemon {
  readonly url: string;

  constructor(
    readonly home: MonocoreHome = new MonocoreHome(),
    readonly port: number = defaultApiPort(),
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  async inspect(): Promise<DaemonState> {
    const record = await readDaemonRecord(this.home.daemonRecordPath);
    if (record === undefined) return { phase: 'absent' };
    if ('unreadable' in record) return { phase: 'stale', why: `its record ${this.home.daemonRecordPath} is unreadable (${record.unreadable})` };
    if (!(await isRunning(record.pid, record.startTime))) return { phase: 'stale', record, why: `pid ${record.pid} no longer runs` };
    return { phase: (await answers(record.url)) ? 'running' : 'unresponsive', record };
  }

  /**
   * Makes sure the daemon runs and answers; starts it when it does not. `say`
   * gets the one line telling the user it is being started. Resolves to the URL
   * it answers at (the recorded one: a daemon already running for this home on
   * another port is used, never a second one beside it).
   */
  async ensure(options: { say: (line: string) => void; timeoutMs?: number }): Promise<{ url: string; started: boolean }> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    await mkdir(this.home.runDir, { recursive: true, mode: 0o700 });
    const lock = await HostLock.acquire(this.home.daemonLockPath, { timeoutMs: timeoutMs + 30_000, code: 'MC_DAEMON_START_FAILED' });
    try {
      const state = await this.inspect();
      if (state.phase === 'running') return { url: state.record!.url, started: false };
      if (state.phase === 'unresponsive') {
        // Its starter let go of the lock without seeing it answer (killed while waiting), or it hangs: give it the start time.
        const record = state.record!;
        await this.waitUntilAnswering(record, { owned: false, timeoutMs, logStart: 0 });
        return { url: record.url, started: false };
      }
      let previous = '';
      if (state.phase === 'stale') {
        const ended = state.record ? await endSession(state.record.pid, 5_000) : 0;
        await removeDaemonRecord(this.home.daemonRecordPath);
        previous = `; it replaces one that had stopped (${state.why}${ended > 0 ? `; ended ${ended} process(es) it left` : ''})`;
      }
      // Something already answers here that is not ours (a `monocore serve` in a terminal): use it.
      if (await answers(this.url)) return { url: this.url, started: false };
      return { url: await this.spawnDaemon(options.say, previous, timeoutMs), started: true };
    } finally {
      await lock.release();
    }
  }

  /** Stops the daemon and every process of its session; safe to call when none runs. */
  async stop(options: { timeoutMs?: number } = {}): Promise<StopResult> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    await mkdir(this.home.runDir, { recursive: true, mode: 0o700 });
    // Taken so a stop and a start never interleave; a start holds it at most its start timeout.
    const lock = await HostLock.acquire(this.home.daemonLockPath, { timeoutMs: DEFAULT_START_TIMEOUT_MS + 30_000, code: 'MC_DAEMON_STOP_FAILED' });
    try {
      const state = await this.inspect();
      const record = state.record;
      if (!record) {
        await removeDaemonRecord(this.home.daemonRecordPath);
        return { before: state.phase, forced: false, leftovers: 0 };
      }
      let forced = false;
      if (state.phase !== 'stale') {
        // serve stops the API, the worker (its VMs), the puller and Redis, in that order, on SIGTERM.
        signalProcess(record.pid, 'SIGTERM');
        if (!(await waitWhile(() => isRunning(record.pid, record.startTime), timeoutMs))) {
          forced = true;
          signalProcess(record.pid, 'SIGKILL');
          await waitWhile(() => isRunning(record.pid, record.startTime), 10_000);
        }
      }
      const leftovers = await endSession(record.pid, 10_000);
      await removeDaemonRecord(this.home.daemonRecordPath);
      return { before: state.phase, pid: record.pid, forced, leftovers };
    } finally {
      await lock.release();
    }
  }

  private async spawnDaemon(say: (line: string) => void, previous: string, timeoutMs: number): Promise<string> {
    const logPath = this.home.daemonLogPath;
    await mkdir(this.home.logDir, { recursive: true });
    const size = await stat(logPath).then((s) => s.size, () => 0);
    if (size > LOG_ROTATE_BYTES) await rename(logPath, `${logPath}.1`);
    const argv = [CLI_MAIN, 'serve', '--host', '127.0.0.1', '--port', String(this.port)];
    const logFd = openSync(logPath, 'a', 0o600);
    let child: ChildProcess;
    try {
      writeSync(logFd, `--- ${new Date().toISOString()} monocore ${VERSION}: starting the daemon (monocore serve --port ${this.port})\n`);
      const logStart = (await stat(logPath)).size;
      // detached: setsid() in the child, so it is its session's leader and no terminal's hang-up reaches it.
      child = spawn(process.execPath, argv, { detached: true, stdio: ['ignore', logFd, logFd], env: process.env });
      const exited = new Promise<string>((resolve) => {
        child.once('exit', (code, sig) => resolve(sig ? `it was killed by ${sig}` : `it exited with code ${code}`));
        child.once('error', (err) => resolve(`it could not be started: ${err.message}`));
      });
      const pid = child.pid;
      const started = pid !== undefined ? await procStat(pid) : undefined;
      if (pid === undefined || started === undefined) {
        throw new MonocoreError('MC_DAEMON_START_FAILED', `the local monocore daemon did not start: ${await exited}`, { log: logPath });
      }
      const record: DaemonRecord = {
        pid,
        startTime: started.startTime,
        url: this.url,
        startedAt: new Date().toISOString(),
        version: VERSION,
        log: logPath,
      };
      await writeDaemonRecord(this.home.daemonRecordPath, record);
      say(`monocore: nothing answered at ${this.url}, so the local daemon starts there (pid ${pid}, state in ${this.home.root}; \`monocore daemon stop\` stops it)${previous}`);
      await this.waitUntilAnswering(record, { owned: true, exited, timeoutMs, logStart });
      child.unref();
      return this.url;
    } finally {
      closeSync(logFd);
    }
  }

  /**
   * Resolves once /healthz answers; otherwise throws with the log's tail. A
   * daemon this command started (`owned`) is stopped first, with whatever it
   * spawned, so nothing half-started stays behind; one found running is left
   * to `monocore daemon stop`.
   */
  private async waitUntilAnswering(
    record: DaemonRecord,
    how: { owned: boolean; exited?: Promise<string>; timeoutMs: number; logStart: number },
  ): Promise<void> {
    const deadline = performance.now() + how.timeoutMs;
    let ended: string | undefined;
    void how.exited?.then((why) => (ended = why));
    for (;;) {
      if (await answers(record.url)) return;
      // Our own child: its exit event says how (it follows the process's end at once).
      if (ended === undefined && !(await isRunning(record.pid, record.startTime))) ended = how.exited ? await how.exited : 'it exited';
      if (ended !== undefined || performance.now() >= deadline) break;
      await sleep(100);
    }
    const why = ended ?? `it did not answer at ${record.url} within ${Math.round(how.timeoutMs / 1000)} s`;
    if (how.owned || ended !== undefined) {
      await endSession(record.pid, 5_000).catch(() => 0);
      await removeDaemonRecord(this.home.daemonRecordPath);
    }
    const hint = how.owned || ended !== undefined ? '' : ` (pid ${record.pid} still runs: \`monocore daemon logs\`, \`monocore daemon stop\`)`;
    const tail = await logTail(record.log, how.logStart, 20);
    throw new MonocoreError(
      'MC_DAEMON_START_FAILED',
      `the local monocore daemon did not come up: ${why}${hint}. Last lines of ${record.log}:\n${tail || '  (empty)'}`,
      { log: record.log, pid: record.pid },
    );
  }
}

const probe = new Agent({ connectTimeout: 2_000, headersTimeout: 5_000, bodyTimeout: 5_000, pipelining: 0 });

/** True when a monocore API answers /healthz with 200 (it is up and reaches its Redis). */
async function answers(url: string): Promise<boolean> {
  try {
    const res = await request(`${url}/healthz`, { dispatcher: probe, headers: { connection: 'close' } });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}

/** The last `lines` lines written to `path` after byte `from`, indented. */
export async function logTail(path: string, from: number, lines: number): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(from, size - 64 * 1024);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return buf
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .slice(-lines)
        .map((l) => `  ${l}`)
        .join('\n');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}
