import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MonocoreError } from '../../errors/index.js';

/**
 * A QEMU Machine Protocol client on a connection QEMU opened to us (its monitor is a
 * chardev client of a socket we listen on, like the serial ports: docs/VM.md). Only
 * what snapshots need: commands with their answers in order, and the greeting.
 * Everything QEMU sends is bounded: a line over 1 MiB ends the session.
 */
export class QmpClient {
  readonly #sock: Socket;
  readonly #pending: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void; command: string }> = [];
  readonly #ready: Promise<void>;
  #greeted!: () => void;
  #failGreeting!: (e: Error) => void;
  #buf = '';
  #closed?: Error;

  private constructor(sock: Socket, readonly label: string) {
    this.#sock = sock;
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#greeted = resolve;
      this.#failGreeting = reject;
    });
    this.#ready.catch(() => undefined);
    let greeting = true;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.#buf += d;
      if (this.#buf.length > 1 << 20) return this.#fail(new Error('QMP: a message over 1 MiB'));
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (!line) continue;
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return this.#fail(new Error(`QMP: not JSON: ${line.slice(0, 200)}`));
        }
        if (greeting && 'QMP' in msg) {
          greeting = false;
          this.#greeted();
          continue;
        }
        if ('event' in msg) continue;
        const p = this.#pending.shift();
        if (!p) continue;
        if ('error' in msg) {
          const e = msg.error as { class?: string; desc?: string };
          p.reject(new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${label}: QMP ${p.command}: ${e.desc ?? 'error'} (${e.class ?? '?'})`, { id: label, command: p.command }));
        } else p.resolve(msg.return);
      }
    });
    const gone = (): void => this.#fail(new Error('QMP connection closed (QEMU exited?)'));
    sock.on('close', gone);
    sock.on('error', gone);
  }

  #fail(err: Error): void {
    if (this.#closed) return;
    this.#closed = err;
    this.#failGreeting(err);
    for (const p of this.#pending.splice(0)) p.reject(new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${this.label}: QMP ${p.command}: ${err.message}`, { id: this.label }));
    this.#sock.destroy();
  }

  /** Waits for QEMU's greeting and leaves capability negotiation mode. */
  static async open(sock: Socket, label: string): Promise<QmpClient> {
    const c = new QmpClient(sock, label);
    await c.#ready;
    await c.execute('qmp_capabilities');
    return c;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closed) return Promise.reject(new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${this.label}: QMP ${command}: ${this.#closed.message}`, { id: this.label }));
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ resolve: resolve as (v: unknown) => void, reject, command });
      this.#sock.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    });
  }

  /** Polls `query-migrate` until the migration completed, or throws with QEMU's reason. */
  async migrationDone(pollMs = 10, timeoutMs = 120_000): Promise<void> {
    const t0 = performance.now();
    for (;;) {
      const r = await this.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
      if (r.status === 'completed') return;
      if (r.status === 'failed' || r.status === 'cancelled') {
        throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${this.label}: migration ${r.status}${r['error-desc'] ? `: ${r['error-desc']}` : ''}`, { id: this.label });
      }
      if (performance.now() - t0 > timeoutMs) throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${this.label}: migration still ${r.status ?? 'not started'} after ${timeoutMs} ms`, { id: this.label });
      await new Promise((r2) => setTimeout(r2, pollMs));
    }
  }

  close(): void {
    this.#fail(new Error('closed by the host'));
  }
}
