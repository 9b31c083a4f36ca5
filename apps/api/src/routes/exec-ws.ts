import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import {
  ExecSessionClientMessageSchema,
  ExecSessionStartSchema,
  WS_STREAM_STDERR,
  WS_STREAM_STDOUT,
  type ExecSessionServerMessage,
} from '@monocore/api-schemas';
import { ErrorCodes, MonocoreError, isMonocoreError, type RelayCall, type RelayTarget, type SandboxApi } from '@monocore/engine';
import type { RouteDeps } from './deps.js';
import { EXEC_TARGETS, targetOf } from './exec-target.js';

/** Stop reading the client's frames while this much stdin waits for the guest. */
const MAX_PENDING_STDIN = 1 << 20;

/**
 * GET /sandboxes/:id/exec/ws and /services/:name/exec/ws: an interactive
 * session (docs/API.md). The first client frame is the ExecSessionStart JSON;
 * then binary frames are stdin, text frames control messages. The server sends
 * output as binary frames (first byte: the stream), then `exit` or `error`, and
 * closes (1000; an error before the start closes with 4000 + its HTTP status).
 */
export async function execWsRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const sandboxes = deps.sandboxes!;
  for (const t of EXEC_TARGETS) {
    app.get(
      `${t.prefix}/exec/ws`,
      {
        websocket: true,
        schema: {
          summary: `Interactive session in a ${t.kind} (WebSocket)`,
          description:
            'First frame: ExecSessionStart (JSON text). Then binary frames = stdin; text frames = {"type":"stdin"|"eof"|"resize"|"signal",…}. ' +
            'Server: binary frames (first byte 1 stdout, 2 stderr), text {"type":"started"|"exit"|"error",…}.',
          tags: [t.tag],
          params: t.params,
        },
      },
      (socket: WebSocket, request: FastifyRequest) => {
        new ExecSession(socket, sandboxes, targetOf(t.kind, request.params), request).start();
      },
    );
  }
}

class ExecSession {
  #call?: RelayCall;
  /** Client frames are handled one after another (stdin order, then control). */
  #chain: Promise<void> = Promise.resolve();
  #pendingStdin = 0;
  #closed = false;
  /** The command started (`started` was sent): errors from now on close with 1011. */
  #started = false;

  constructor(
    readonly socket: WebSocket,
    readonly sandboxes: SandboxApi,
    readonly target: RelayTarget,
    readonly request: FastifyRequest,
  ) {}

  start(): void {
    const { socket } = this;
    socket.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (isBinary) {
        this.#pendingStdin += buf.length;
        if (this.#pendingStdin > MAX_PENDING_STDIN) socket.pause();
      }
      this.#chain = this.#chain.then(() => this.#onFrame(buf, isBinary)).catch((err: unknown) => this.#fail(err));
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#call?.close(); // kills the command unless it already ended
    });
    socket.on('error', () => undefined);
  }

  async #onFrame(buf: Buffer, isBinary: boolean): Promise<void> {
    if (this.#closed) return;
    if (!this.#call) {
      if (isBinary) throw badFrame('the first frame must be the start message (JSON text)');
      const parsed = ExecSessionStartSchema.safeParse(parseJson(buf));
      if (!parsed.success) throw badFrame(`start message: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
      const s = parsed.data;
      this.#call = await this.sandboxes.call(this.target, {
        op: 'exec',
        argv: s.cmd,
        stdin: s.stdin,
        ...(s.env ? { env: s.env } : {}),
        ...(s.cwd !== undefined ? { cwd: s.cwd } : {}),
        ...(s.user !== undefined ? { user: s.user } : {}),
        ...(s.tty ? { tty: s.tty } : {}),
        ...(s.timeout_s !== undefined ? { timeoutMs: Math.ceil(s.timeout_s * 1000) } : {}),
      });
      if (this.#closed) return this.#call.close();
      const opened = await this.#call.opened;
      this.#started = true;
      this.#sendJson({ type: 'started', pid: opened.pid ?? 0 });
      void this.#pumpOutput(this.#call);
      return;
    }
    const call = this.#call;
    if (isBinary) {
      await call.write(buf).catch(() => undefined);
      this.#pendingStdin -= buf.length;
      if (this.#pendingStdin <= MAX_PENDING_STDIN / 2 && this.socket.isPaused) this.socket.resume();
      return;
    }
    const m = ExecSessionClientMessageSchema.safeParse(parseJson(buf));
    if (!m.success) throw badFrame(`control message: ${m.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    const msg = m.data;
    if (msg.type === 'stdin') await call.write(Buffer.from(msg.data, 'utf8')).catch(() => undefined);
    else if (msg.type === 'eof') await call.end().catch(() => undefined);
    else if (msg.type === 'resize') await call.resize(msg.cols, msg.rows);
    else await call.signal(msg.signal, msg.target);
  }

  async #pumpOutput(call: RelayCall): Promise<void> {
    try {
      for await (const c of call.output()) {
        if (this.#closed) return;
        const frame = Buffer.allocUnsafe(c.data.length + 1);
        frame[0] = c.stream === 'stdout' ? WS_STREAM_STDOUT : WS_STREAM_STDERR;
        c.data.copy(frame, 1);
        // Resolves once written to the socket: a client that reads slowly slows the command down.
        await new Promise<void>((res) => this.socket.send(frame, { binary: true }, () => res()));
      }
      const exit = (await call.result).exit;
      if (!exit) throw new MonocoreError('MC_INTERNAL', 'the worker ended the exec without its exit');
      this.#sendJson({
        type: 'exit',
        exit_code: exit.exitCode,
        signal: exit.signal,
        timed_out: exit.timedOut,
        duration_ms: exit.durationMs,
        ...(exit.spawnError !== undefined ? { spawn_error: exit.spawnError } : {}),
      });
      this.socket.close(1000, 'exited');
    } catch (err) {
      this.#fail(err);
    }
  }

  #sendJson(m: ExecSessionServerMessage): void {
    if (!this.#closed) this.socket.send(JSON.stringify(m));
  }

  #fail(err: unknown): void {
    if (this.#closed) return;
    const e = isMonocoreError(err) ? err : new MonocoreError('MC_INTERNAL', 'the session failed; see the API log');
    if (!isMonocoreError(err)) this.request.log.error({ err }, 'exec session failed');
    this.#sendJson({ type: 'error', code: e.code, message: e.message });
    const status = ErrorCodes[e.code].status;
    // Before the command started the close code carries the HTTP status (4404, 4409…); after it, 1011.
    this.socket.close(this.#started ? 1011 : 4000 + status, e.code);
    this.#closed = true;
    this.#call?.close();
  }
}

function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}

function badFrame(message: string): MonocoreError {
  return new MonocoreError('MC_API_BAD_REQUEST', message, { issues: [{ path: 'frame', message }] });
}
