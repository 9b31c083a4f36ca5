import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'undici';
import {
  ExecSessionServerMessageSchema,
  WS_STREAM_STDERR,
  WS_STREAM_STDOUT,
  type ExecSessionClientMessage,
  type ExecSessionStart,
} from '@monocore/api-schemas';
import type { ExecExit } from './exec-stream.js';
import { parseAnswer, type HttpTransport } from './http-transport.js';
import { MonocoreApiError } from './monocore-api-error.js';

/** Options of an interactive session: the exec fields of ExecSessionStart (snake_case, as the API takes them). */
export type SessionOptions = Omit<ExecSessionStart, 'cmd'> & {
  /** Closing the session when this aborts kills the command. */
  signal?: AbortSignal;
};

/** Output of a session: raw bytes as the command wrote them (with a tty, everything comes on stdout). */
export interface SessionChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

/** Stop sending stdin while this much is still queued in the socket (the API pauses reading at 1 MiB). */
const MAX_QUEUED_STDIN = 1 << 20;

/**
 * An interactive command over the WebSocket route (`GET …/exec/ws`): stdin
 * as it comes, a pseudo-terminal with resize, signals. Open one with
 * `sandbox.session(cmd, opts)`. Output is read with `for await (const c of
 * session.output())`; `exit` resolves with how the command ended, or rejects
 * with a MonocoreApiError (the sandbox was lost, the connection dropped).
 *
 * Output is not flow-controlled on this route (a WebSocket cannot pause its
 * sender here): for bulk output use `execStream`, whose NDJSON answer is.
 */
export class ExecSession {
  /** The command's process id in the guest. */
  pid = 0;
  readonly exit: Promise<ExecExit>;
  private readonly queue: SessionChunk[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: MonocoreApiError | undefined;
  private exitValue: ExecExit | undefined;
  private resolveExit!: (e: ExecExit) => void;
  private rejectExit!: (e: unknown) => void;

  private constructor(private readonly ws: WebSocket) {
    this.exit = new Promise<ExecExit>((resolve, reject) => {
      this.resolveExit = resolve;
      this.rejectExit = reject;
    });
    // An unread rejection is the caller's business through `output()`; never an unhandled one.
    this.exit.catch(() => undefined);
  }

  /**
   * Opens the WebSocket, sends the start frame and resolves once the command
   * started (the `started` message), or rejects with the API's error.
   * `probe` explains a failed upgrade (the WebSocket API does not show the
   * HTTP answer): it makes an ordinary request that throws the API's error.
   */
  static async open(
    http: HttpTransport,
    path: string,
    start: ExecSessionStart,
    options: { signal?: AbortSignal; probe: () => Promise<void> },
  ): Promise<ExecSession> {
    for (let attempt = 0; ; attempt++) {
      const url = new URL(`${http.url}${path}`);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      const ws = new WebSocket(url, { headers: http.authHeaders(), dispatcher: http.dispatcher });
      ws.binaryType = 'arraybuffer';
      const session = new ExecSession(ws);
      const opened = await session.start(start);
      if (opened === 'started') {
        if (options.signal) {
          if (options.signal.aborted) session.close();
          else options.signal.addEventListener('abort', () => session.close(), { once: true });
        }
        return session;
      }
      if (opened instanceof MonocoreApiError) throw opened;
      // The upgrade itself failed: an ordinary request says why (refused, 401, 404…). It may
      // also bring the API up (the transport's onUnreachable): then the session is tried again there.
      const before = http.url;
      await options.probe();
      if (attempt === 0 && http.url !== before) continue;
      throw new MonocoreApiError('MC_API_BAD_RESPONSE', `the WebSocket upgrade of GET ${path} failed (the API answers ordinary requests): is a proxy in between?`);
    }
  }

  /** 'started', the API's error before the start, or 'upgrade-failed'. */
  private start(start: ExecSessionStart): Promise<'started' | 'upgrade-failed' | MonocoreApiError> {
    const ws = this.ws;
    return new Promise((resolve) => {
      let open = false;
      let settled = false;
      const settle = (v: 'started' | 'upgrade-failed' | MonocoreApiError): void => {
        if (!settled) {
          settled = true;
          resolve(v);
        }
      };
      ws.addEventListener('open', () => {
        open = true;
        ws.send(JSON.stringify(start));
      });
      ws.addEventListener('message', (ev) => {
        const data = ev.data as ArrayBuffer | string;
        if (typeof data !== 'string') {
          const bytes = Buffer.from(data);
          const stream = bytes[0] === WS_STREAM_STDOUT ? 'stdout' : bytes[0] === WS_STREAM_STDERR ? 'stderr' : undefined;
          if (stream && bytes.length > 1) this.push({ stream, data: bytes.subarray(1) });
          return;
        }
        let msg;
        try {
          msg = parseAnswer(ExecSessionServerMessageSchema, JSON.parse(data), 'an exec session message');
        } catch (err) {
          this.failure ??= err instanceof MonocoreApiError ? err : new MonocoreApiError('MC_API_BAD_RESPONSE', `an exec session message is not JSON: ${data.slice(0, 200)}`);
          ws.close();
          return;
        }
        if (msg.type === 'started') {
          this.pid = msg.pid;
          settle('started');
        } else if (msg.type === 'exit') {
          const { type: _type, ...exit } = msg;
          this.exitValue = exit;
        } else {
          this.failure = new MonocoreApiError(msg.code, msg.message);
        }
      });
      ws.addEventListener('close', (ev) => {
        // Before the command started the API closes with 4000 + the HTTP status of its error.
        const status = ev.code >= 4000 && ev.code < 5000 ? ev.code - 4000 : 0;
        if (this.failure && status > 0) this.failure = new MonocoreApiError(this.failure.code, this.failure.message, { status });
        if (!open) settle('upgrade-failed');
        else if (!settled) settle(this.failure ?? new MonocoreApiError('MC_API_BAD_RESPONSE', `the exec session closed before the command started (${ev.code} ${ev.reason})`, { status }));
        this.finish(ev.code, ev.reason);
      });
      ws.addEventListener('error', () => undefined); // 'close' follows and decides
    });
  }

  private push(chunk: SessionChunk): void {
    this.queue.push(chunk);
    this.wake?.();
  }

  private finish(code: number, reason: string): void {
    this.ended = true;
    if (this.exitValue) this.resolveExit(this.exitValue);
    else {
      this.failure ??= new MonocoreApiError('MC_API_UNREACHABLE', `the exec session's connection closed before the command's exit (${code}${reason ? ` ${reason}` : ''})`);
      this.rejectExit(this.failure);
    }
    this.wake?.();
  }

  /** The output in order; ends when the command exited, throws when the session failed. Read it once. */
  async *output(): AsyncGenerator<SessionChunk> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) break;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    await this.exit;
  }

  /** Sends stdin bytes (or text, as UTF-8). */
  write(data: string | Uint8Array): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (typeof data === 'string') this.control({ type: 'stdin', data });
    else this.ws.send(data);
  }

  /** Sends stdin and waits while the socket holds more than 1 MiB not yet sent (the API's own limit). */
  async writeAll(source: AsyncIterable<Uint8Array | string>): Promise<void> {
    for await (const chunk of source) {
      if (this.ws.readyState !== WebSocket.OPEN) return;
      this.write(chunk);
      // undici's WebSocket has no 'drain' event: poll its queue while it is over the limit.
      while (this.ws.readyState === WebSocket.OPEN && this.ws.bufferedAmount > MAX_QUEUED_STDIN) await sleep(5);
    }
  }

  /** Closes the command's stdin (it reads end-of-file). */
  end(): void {
    this.control({ type: 'eof' });
  }

  /** Resizes the pseudo-terminal (sessions started with `tty`). */
  resize(cols: number, rows: number): void {
    this.control({ type: 'resize', cols, rows });
  }

  /** Sends a signal (name or number) to the process, its group or its whole tree. */
  kill(signal: string | number = 'SIGTERM', target: 'process' | 'group' | 'tree' = 'process'): void {
    this.control({ type: 'signal', signal, target });
  }

  /** Ends the session; a command still running is killed (process tree). */
  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
  }

  private control(msg: ExecSessionClientMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }
}
