/**
 * The guest agent as an ordinary host process (`init agent --connect SOCKET`):
 * the same C sources the initramfs compiles, built here with the same gcc
 * arguments, talking to the real host client over a unix socket. No VM, so
 * protocol tests take milliseconds. (Test mode: no chroot, no cgroups, and
 * refresh is refused, so nothing on the host is changed but temp files.)
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { truncateSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { AgentSession, AGENT_LANE_FILE_BYTES, guestInitCompileArgs, guestInitSourcePath, type AgentSessionOptions } from '@monocore/engine';
import { tempDir } from './vm-fixtures.js';

let built: string | undefined;

/** Compiles init.c + agent.c + guest-common.c once per test process. */
export function hostAgentBinary(): string {
  if (built) return built;
  const out = join(tempDir('agent-bin'), 'init');
  execFileSync('gcc', guestInitCompileArgs(guestInitSourcePath(), out, 'test', true), { stdio: 'inherit' });
  built = out;
  return out;
}

export interface HostAgent {
  proc: ChildProcess;
  server: Server;
  socketPath: string;
  /** The bulk lane file both ends use, when started with `lane: true`, and the host's handle on it. */
  lanePath?: string;
  laneFile?: FileHandle;
  /** Agent stderr (its log), for assertions and failure messages. */
  log(): string;
  /** The next connection the agent makes (it reconnects after the host hangs up). */
  nextConnection(): Promise<Socket>;
  /** Handshakes on the next connection. */
  session(opts?: AgentSessionOptions): Promise<AgentSession>;
  stop(): Promise<void>;
}

export async function startHostAgent(opts: { env?: string[]; workdir?: string; user?: string; lane?: boolean } = {}): Promise<HostAgent> {
  const dir = tempDir('agent-sock');
  const socketPath = join(dir, 'agent.sock');
  const server = createServer();
  const pending: Socket[] = [];
  const waiters: Array<(s: Socket) => void> = [];
  server.on('connection', (s) => {
    const w = waiters.shift();
    if (w) w(s);
    else pending.push(s);
  });
  server.listen(socketPath);
  await once(server, 'listening');
  const args = ['agent', '--connect', socketPath, '--busybox', '/bin/busybox'];
  for (const e of opts.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']) args.push('--env', e);
  if (opts.workdir) args.push('--workdir', opts.workdir);
  if (opts.user) args.push('--user', opts.user);
  let lanePath: string | undefined;
  let laneFile: FileHandle | undefined;
  if (opts.lane) {
    // A plain file stands in for the VM's lane disk (the agent opens it without O_DIRECT when it must).
    lanePath = join(dir, 'lane.img');
    writeFileSync(lanePath, '');
    truncateSync(lanePath, AGENT_LANE_FILE_BYTES);
    args.push('--lane', lanePath);
    laneFile = await open(lanePath, 'r+');
  }
  const proc = spawn(hostAgentBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => {
    if (log.length < 1 << 20) log += d.toString('utf8');
  });
  const nextConnection = (): Promise<Socket> =>
    new Promise<Socket>((resolve, reject) => {
      const s = pending.shift();
      if (s) return resolve(s);
      const onExit = (): void => reject(new Error(`the agent exited before connecting: ${log}`));
      proc.once('exit', onExit);
      waiters.push((sock) => {
        proc.off('exit', onExit);
        resolve(sock);
      });
    });
  return {
    proc,
    server,
    socketPath,
    ...(lanePath ? { lanePath, laneFile } : {}),
    log: () => log,
    nextConnection,
    session: async (o) => AgentSession.open(await nextConnection(), { label: 'host-agent', ...(laneFile ? { lane: laneFile } : {}), ...o }),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await once(proc, 'exit');
      }
      server.close();
      await laneFile?.close();
    },
  };
}
