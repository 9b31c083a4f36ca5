import { spawn, type ChildProcess } from 'node:child_process';

/** Where a tied child's stdout or stderr goes: nowhere, to the caller, or copied to our stderr. */
export type TiedOutput = 'ignore' | 'pipe' | 'forward';

export interface TiedOptions {
  env?: NodeJS.ProcessEnv;
  stdout?: TiedOutput;
  stderr?: TiedOutput;
}

/**
 * Spawns a long-lived helper process (a worker host, a proxy, a server) that dies
 * with the test process and never holds the test runner's pipes.
 *
 * Why: Node's test runner reads each test file's stdout and stderr; a child started
 * with `stdio: 'inherit'` holds them. When a test timed out, its process was killed
 * but the worker processes it had started went on (reconnecting to a Redis that was
 * gone) with the runner's pipe open, so the runner printed its summary and then never
 * exited: CI ran out of time. Here the output is piped and copied (`forward`, the
 * default), and `setpriv --pdeathsig KILL` has the kernel kill the child when this
 * process dies, however it dies. setpriv execs the command: `child.pid` is its pid.
 */
export function spawnTied(cmd: string, args: readonly string[], options: TiedOptions = {}): ChildProcess {
  const stdout = options.stdout ?? 'forward';
  const stderr = options.stderr ?? 'forward';
  const stdio = (o: TiedOutput): 'ignore' | 'pipe' => (o === 'ignore' ? 'ignore' : 'pipe');
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args], {
    env: options.env ?? process.env,
    stdio: ['ignore', stdio(stdout), stdio(stderr)],
  });
  if (stdout === 'forward') child.stdout!.pipe(process.stderr, { end: false });
  if (stderr === 'forward') child.stderr!.pipe(process.stderr, { end: false });
  return child;
}
