import net from 'node:net';
import tls from 'node:tls';
import type { RedisOptions } from 'ioredis';
import { RespError, RespProtocolError, RespReader, type RespLimits, type RespValue } from './resp-reader.js';

interface Pending {
  resolve(v: RespValue): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
}

/**
 * A connection to Redis of the inbox's own, for its blocking XREAD: the socket's bytes go
 * through a RespReader that reads each large field straight into a slab (resp-reader.ts) — with
 * `onread` on a plain socket, so not even the socket's own 64 KiB reads are fresh memory. Made
 * from the options of one of the process's ioredis connections (host or unix path, TLS,
 * username, password, db), so it reaches the same Redis the same way. Commands are pipelined
 * and answered in order; it does not reconnect: the inbox opens a new one when this one fails.
 */
export class ReaderConnection {
  readonly #socket: net.Socket;
  readonly #reader: RespReader;
  readonly #pending: Pending[] = [];
  #failed?: Error;
  #corked = false;

  private constructor(options: RedisOptions, limits: RespLimits) {
    this.#reader = new RespReader(limits, (v) => this.#reply(v));
    if (options.tls) {
      // No `onread` for TLS: its decrypted chunks are copied in.
      const t = tls.connect({ ...(options.host !== undefined ? { host: options.host, servername: options.host } : {}), ...(options.port !== undefined ? { port: options.port } : {}), ...options.tls });
      t.on('data', (chunk: Buffer) => this.#guard(() => this.#reader.feed(chunk)));
      this.#socket = t;
    } else {
      const onread = {
        buffer: (): Uint8Array => this.#reader.target(),
        callback: (n: number): boolean => this.#guard(() => this.#reader.wrote(n)),
      };
      this.#socket = options.path
        ? net.connect({ path: options.path, onread })
        : net.connect({ host: options.host ?? '127.0.0.1', port: options.port ?? 6379, ...(options.family !== undefined ? { family: options.family } : {}), onread });
      this.#socket.setNoDelay(true);
    }
    this.#socket.setKeepAlive(true, 30_000);
    this.#socket.on('error', (err) => this.#fail(err));
    this.#socket.on('close', () => this.#fail(new Error('the connection to Redis closed')));
  }

  /** Connects, then authenticates and selects the database as `options` say. */
  static async open(options: RedisOptions, limits: RespLimits, timeoutMs = 10_000): Promise<ReaderConnection> {
    const c = new ReaderConnection(options, limits);
    try {
      if (options.password) await c.command(options.username ? ['AUTH', options.username, options.password] : ['AUTH', options.password], timeoutMs);
      if (options.db) await c.command(['SELECT', String(options.db)], timeoutMs);
      else await c.command(['PING'], timeoutMs);
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  get failed(): boolean {
    return this.#failed !== undefined;
  }

  /**
   * Sends a command; resolves with its reply, rejects with a RespError for an error reply, or
   * with the connection's failure (then the connection is done). A reply that takes longer than
   * `timeoutMs` fails the connection: a Redis that stopped answering must not hold the inbox.
   */
  command(args: ReadonlyArray<string | Buffer>, timeoutMs?: number): Promise<RespValue> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject };
      if (timeoutMs !== undefined) p.timer = setTimeout(() => this.#fail(new Error(`Redis did not answer ${String(args[0])} within ${timeoutMs} ms`)), timeoutMs);
      this.#pending.push(p);
      // Commands sent in one go (the inbox's XTRIM and XREAD) leave in one write: one wake-up of Redis.
      if (!this.#corked) {
        this.#corked = true;
        this.#socket.cork();
        process.nextTick(() => {
          this.#corked = false;
          this.#socket.uncork();
        });
      }
      this.#socket.write(encodeCommand(args));
    });
  }

  close(): void {
    this.#fail(new Error('the inbox connection was closed'));
  }

  #reply(v: RespValue): void {
    const p = this.#pending.shift();
    if (!p) throw new RespProtocolError('a reply to no command');
    clearTimeout(p.timer);
    if (v instanceof RespError) p.reject(v);
    else p.resolve(v);
  }

  /** Runs the reader; a protocol error ends the connection (its bytes cannot be trusted any more). */
  #guard(fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (err) {
      this.#fail(err as Error);
      return false;
    }
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = err;
    this.#socket.destroy();
    for (const p of this.#pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }
}

/** A command as RESP: an array of bulk strings. */
export function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}
