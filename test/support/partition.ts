import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { spawnTied } from './tied-child.js';

const proxyMain = fileURLToPath(new URL('./tcp-proxy.js', import.meta.url));

/**
 * A partition between one client and a server: the client connects through
 * `port`, a forwarder in its own process; `cut()` freezes it (SIGSTOP), `heal()`
 * resumes it (SIGCONT). The server and the client stay up and healthy.
 */
export class Partition {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(target: string): Promise<Partition> {
    const child = spawnTied(process.execPath, [proxyMain, target], { stdout: 'pipe' });
    let buf = '';
    child.stdout!.setEncoding('utf8');
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (d: string) => {
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl >= 0) resolve(Number(buf.slice(0, nl)));
      });
      child.once('exit', (code) => reject(new Error(`tcp-proxy exited with ${code} before listening`)));
    });
    return new Partition(child, port);
  }

  cut(): void {
    this.child.kill('SIGSTOP');
  }

  heal(): void {
    this.child.kill('SIGCONT');
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGCONT');
    this.child.kill('SIGKILL');
    await once(this.child, 'exit');
  }
}
