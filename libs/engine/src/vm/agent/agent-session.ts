import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { MonocoreError } from '../../errors/index.js';
import type {
  AgentInfo, BufferedExecOptions, DetachedExec, ExecExit, ExecRequest, ExecResult, FileSource, GuestAgent,
  GuestFileInfo, GuestFileRead, GuestIdentity, GuestProcess, RefreshResult, WriteFileOptions,
} from '../guest-agent.js';
import {
  encodeFrame, FrameDecoder, FrameError, FrameType, frameTypeName, HandshakeScanner, MAX_PAYLOAD, PROTOCOL_VERSION, type Frame,
} from './agent-frame.js';
import { LaneReader, LanePool, LaneWriter, LANE_SLOTS_PER_TRANSFER, LANE_SLOT_BYTES } from './agent-lane.js';
import { encodeRecords, parseRecords, RecordValueError, RecordsError, type RecordList } from './agent-records.js';
import { CreditSender, GuestReadable, GuestWritable } from './agent-streams.js';

export interface AgentSessionOptions {
  /** Names the VM in messages. */
  label?: string;
  /** How long the guest may take to answer HELLO (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Bytes the handshake may skip before the answer (default 16 MiB). */
  handshakeMaxSkipBytes?: number;
  /** Liveness: a PING this often (default 5 s) … */
  pingIntervalMs?: number;
  /** … and the PONG must come within this (default 20 s), else MC_AGENT_UNRESPONSIVE. */
  pingTimeoutMs?: number;
  /** Concurrent execs + file transfers (default 1024). */
  maxChannels?: number;
  /** Window per guest→host stream (default 256 KiB). */
  windowBytes?: number;
  /** Data writers wait for the socket to drain above this (default 1 MiB). */
  writeHighWaterBytes?: number;
  /**
   * The host's end of the VM's bulk lane (agent-lane.ts), opened by whoever made the file (never
   * reopened by path: the VM's uid owns the directory); file data moves through it when the agent
   * has a lane too. The session does not close it.
   */
  lane?: FileHandle;
  logger?: Logger;
}

const DEFAULTS = {
  handshakeTimeoutMs: 10_000,
  handshakeMaxSkipBytes: 16 << 20,
  pingIntervalMs: 5_000,
  pingTimeoutMs: 20_000,
  maxChannels: 1024,
  windowBytes: 256 * 1024,
  writeHighWaterBytes: 1 << 20,
};
/** Zeros the host sends before HELLO: completes (and so invalidates) any half frame the guest holds. */
const RESYNC_PAD = 20 + MAX_PAYLOAD;
const MAX_OUTPUT_DEFAULT = 16 << 20;
const MAX_WINDOW = 64 << 20;
const MAX_PID = 1 << 22;

/** A protocol violation by the guest: ends the session with MC_AGENT_PROTOCOL_ERROR. */
class Violation extends Error {}

interface ChannelHandler {
  onFrame(frame: Frame): void;
  /** The session ended before the channel did. */
  onClose(err: MonocoreError): void;
}

function invalid(field: string, message: string): MonocoreError {
  return new MonocoreError('MC_AGENT_REQUEST_INVALID', `${field}: ${message}`, { field });
}

function checkPath(path: unknown, field = 'path'): string {
  if (typeof path !== 'string' || !path.startsWith('/')) throw invalid(field, `${JSON.stringify(path)} is not an absolute path`);
  if (path.includes('\0')) throw invalid(field, 'contains a NUL byte');
  if (Buffer.byteLength(path) >= 4096) throw invalid(field, 'is longer than 4095 bytes');
  return path;
}

function signalNumber(sig: NodeJS.Signals | number, field = 'signal'): number {
  const n = typeof sig === 'number' ? sig : (osConstants.signals as Record<string, number | undefined>)[sig];
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 64) throw invalid(field, `${String(sig)} is not a signal`);
  return n;
}

function errorRecords(payload: Buffer): { errno: string; message: string } {
  const r = parseRecords(payload);
  const errno = r.get('errno') ?? 'EIO';
  if (!/^E[A-Z0-9]{1,20}$/.test(errno)) throw new RecordsError(`errno=${JSON.stringify(errno.slice(0, 30))} is not an errno name`);
  return { errno, message: (r.get('message') ?? '').slice(0, 4096) };
}

function parseFileInfo(payload: Buffer): GuestFileInfo {
  const r = parseRecords(payload);
  const type = r.get('type');
  if (type !== 'file' && type !== 'dir' && type !== 'symlink' && type !== 'other') throw new RecordsError(`type=${JSON.stringify(type)}`);
  const modeText = r.get('mode') ?? '';
  if (!/^[0-7]{1,5}$/.test(modeText)) throw new RecordsError(`mode=${JSON.stringify(modeText.slice(0, 20))}`);
  const mode = parseInt(modeText, 8);
  if (mode > 0o7777) throw new RecordsError(`mode=${modeText} is out of range`);
  return {
    type,
    size: r.requireInt('size'),
    mode,
    uid: r.requireInt('uid', 0xffffffff),
    gid: r.requireInt('gid', 0xffffffff),
    mtimeMs: r.signedInt('mtime_ms') ?? 0,
  };
}

/** Turns source data of any accepted shape into Buffers. */
async function* chunksOf(data: FileSource): AsyncGenerator<Buffer> {
  if (typeof data === 'string') yield Buffer.from(data);
  else if (data instanceof Uint8Array) yield Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  else for await (const c of data as AsyncIterable<Uint8Array | string>) yield typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

/** The session's bulk lane, when both the host and the agent have one (else files move through the port). */
async function openLane(opts: AgentSessionOptions, info: AgentInfo): Promise<LanePool | undefined> {
  if (!opts.lane || !info.lane) return undefined;
  try {
    return await LanePool.open(opts.lane, info.lane.slots, info.lane.slotBytes);
  } catch (err) {
    opts.logger?.warn({ vm: opts.label, err: (err as Error).message }, 'cannot open the bulk lane; files move through the agent port');
    return undefined;
  }
}

/** Streams must never crash the worker with an unhandled 'error': consumers see errors through reads/iteration. */
function quiet<T extends NodeJS.EventEmitter>(s: T): T {
  s.on('error', () => {});
  return s;
}

/**
 * One session with a guest agent over a connected socket (the host end of the
 * VM's `monocore.agent` port): the GuestAgent implementation. Open it with
 * `AgentSession.open(socket)`, which performs the handshake (docs/AGENT.md).
 */
export class AgentSession implements GuestAgent {
  readonly closed: Promise<MonocoreError>;
  private resolveClosed!: (err: MonocoreError) => void;
  private ended?: MonocoreError;
  private readonly opts: typeof DEFAULTS & AgentSessionOptions;
  private readonly decoder = new FrameDecoder();
  private readonly channels = new Map<number, ChannelHandler>();
  private nextChannel = 1;
  private readonly pings = new Map<string, { resolve: (ms: number) => void; sent: number; auto: boolean }>();
  private readonly liveness: NodeJS.Timeout;

  private constructor(
    private readonly socket: Socket,
    readonly info: AgentInfo,
    leftover: Buffer,
    opts: AgentSessionOptions,
    private readonly lane: LanePool | undefined,
  ) {
    this.opts = { ...DEFAULTS, ...opts };
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.terminate(this.disconnected(`connection error: ${err.message}`)));
    socket.on('close', () => this.terminate(this.disconnected('the connection closed')));
    this.liveness = setInterval(() => this.checkLiveness(), this.opts.pingIntervalMs);
    this.liveness.unref();
    if (leftover.length) queueMicrotask(() => this.onData(leftover));
  }

  /**
   * Handshakes on a connected socket: resync padding, HELLO with a fresh nonce,
   * then skips whatever the guest sends until its HELLO_ACK with that nonce.
   */
  static open(socket: Socket, opts: AgentSessionOptions = {}): Promise<AgentSession> {
    const o = { ...DEFAULTS, ...opts };
    const nonce = randomBytes(16).toString('hex');
    const label = opts.label ? `vm ${JSON.stringify(opts.label)}: ` : '';
    return new Promise<AgentSession>((resolve, reject) => {
      let done = false;
      const scanner = new HandshakeScanner((f) => {
        try {
          return parseRecords(f.payload).get('nonce') === nonce;
        } catch {
          return false;
        }
      });
      const finish = (err?: MonocoreError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.off('error', onError);
        if (err) {
          socket.destroy();
          reject(err);
        }
      };
      const onData = (chunk: Buffer): void => {
        if (done) return;
        const found = scanner.push(chunk);
        if (!found) {
          if (scanner.skipped > o.handshakeMaxSkipBytes) {
            finish(new MonocoreError('MC_AGENT_HANDSHAKE_FAILED', `${label}the guest agent sent ${scanner.skipped} bytes without answering the handshake`, { skipped: scanner.skipped }));
          }
          return;
        }
        try {
          const r = parseRecords(found.frame.payload);
          if (found.frame.type === FrameType.ERROR) {
            const e = errorRecords(found.frame.payload);
            finish(new MonocoreError('MC_AGENT_VERSION_MISMATCH', `${label}guest agent: ${e.message}`, { errno: e.errno, hostVersions: [PROTOCOL_VERSION, PROTOCOL_VERSION] }));
            return;
          }
          const version = r.requireInt('version', 1000);
          if (version !== PROTOCOL_VERSION) throw new RecordsError(`version=${version} was not offered`);
          const detached: DetachedExec[] = r.all('detached').map((d) => {
            const m = /^(\d{1,10}) (\d{1,10}) (running|\d{1,3})$/.exec(d);
            if (!m) throw new RecordsError(`detached=${JSON.stringify(d.slice(0, 40))}`);
            return { channel: Number(m[1]), pid: Number(m[2]), exitCode: m[3] === 'running' ? null : Number(m[3]) };
          });
          const lane = r.get('lane');
          const laneGeometry = lane === undefined ? undefined : /^(\d{1,3}) (\d{1,9})$/.exec(lane);
          if (lane !== undefined && !laneGeometry) throw new RecordsError(`lane=${JSON.stringify(lane.slice(0, 40))}`);
          const info: AgentInfo = {
            protocol: version,
            agentVersion: (r.get('agent') ?? '').slice(0, 200),
            bootId: (r.get('boot_id') ?? '').slice(0, 64),
            pid: r.requireInt('pid', MAX_PID),
            uptimeS: Number(r.get('uptime') ?? 'NaN'),
            sessions: r.requireInt('sessions'),
            cgroups: r.get('cgroup') === '1',
            detached,
            ...(laneGeometry ? { lane: { slots: Number(laneGeometry[1]), slotBytes: Number(laneGeometry[2]) } } : {}),
          };
          finish();
          // Data that came after the answer waits in `rest` while the lane file opens.
          socket.pause();
          openLane(opts, info).then((pool) => {
            resolve(new AgentSession(socket, info, found.rest, opts, pool));
            socket.resume();
          }, reject);
        } catch (err) {
          finish(new MonocoreError('MC_AGENT_PROTOCOL_ERROR', `${label}guest agent: malformed handshake answer: ${(err as Error).message}`, { reason: (err as Error).message }));
        }
      };
      const onClose = (): void => finish(new MonocoreError('MC_AGENT_HANDSHAKE_FAILED', `${label}the agent connection closed during the handshake`, {}));
      const onError = (): void => {};
      const timer = setTimeout(
        () => finish(new MonocoreError('MC_AGENT_HANDSHAKE_FAILED', `${label}the guest agent did not answer the handshake within ${o.handshakeTimeoutMs} ms`, { timeoutMs: o.handshakeTimeoutMs })),
        o.handshakeTimeoutMs,
      );
      timer.unref();
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.on('error', onError);
      socket.write(Buffer.alloc(RESYNC_PAD));
      socket.write(encodeFrame(FrameType.HELLO, 0, 0, encodeRecords([['min', String(PROTOCOL_VERSION)], ['max', String(PROTOCOL_VERSION)], ['nonce', nonce]])));
    });
  }

  // ---- session plumbing ---------------------------------------------------------

  private get label(): string {
    return this.opts.label ? `vm ${JSON.stringify(this.opts.label)}: ` : '';
  }

  private disconnected(why: string): MonocoreError {
    return new MonocoreError('MC_AGENT_DISCONNECTED', `${this.label}agent session ended: ${why}`, { label: this.opts.label });
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    try {
      for (const frame of this.decoder.push(chunk)) {
        if (this.ended) return;
        this.dispatch(frame);
      }
    } catch (err) {
      const reason = err instanceof FrameError || err instanceof Violation || err instanceof RecordsError ? err.message : `unexpected: ${(err as Error).message}`;
      this.opts.logger?.warn({ vm: this.opts.label, reason }, 'guest agent protocol error; ending the session');
      this.terminate(new MonocoreError('MC_AGENT_PROTOCOL_ERROR', `${this.label}the guest agent broke the protocol: ${reason}`, { reason, label: this.opts.label }));
    }
  }

  private dispatch(frame: Frame): void {
    if (frame.channel === 0) {
      if (frame.type === FrameType.PONG) {
        const key = frame.payload.toString('hex');
        const p = this.pings.get(key);
        if (!p) throw new Violation('PONG for a PING the host did not send');
        this.pings.delete(key);
        p.resolve(performance.now() - p.sent);
        return;
      }
      if (frame.type === FrameType.ERROR) {
        const e = errorRecords(frame.payload);
        this.opts.logger?.debug({ vm: this.opts.label, errno: e.errno, message: e.message }, 'guest agent session error');
        return;
      }
      throw new Violation(`${frameTypeName(frame.type)} on channel 0`);
    }
    const h = this.channels.get(frame.channel);
    if (!h) throw new Violation(`${frameTypeName(frame.type)} on channel ${frame.channel}, which the host has not opened`);
    h.onFrame(frame);
  }

  private terminate(err: MonocoreError, graceful = false): void {
    if (this.ended) return;
    this.ended = err;
    clearInterval(this.liveness);
    this.lane?.close(err);
    if (graceful) {
      // A close by the host: what was written (a last SIGNAL, CANCEL) still reaches the guest.
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 2000).unref();
    } else {
      this.socket.destroy();
    }
    const handlers = [...this.channels.values()];
    this.channels.clear();
    for (const h of handlers) {
      try {
        h.onClose(err);
      } catch {
        // a handler must not stop the others from hearing about it
      }
    }
    for (const p of this.pings.values()) p.resolve(Number.NaN);
    this.pings.clear();
    this.resolveClosed(err);
  }

  private checkLiveness(): void {
    if (this.ended) return;
    const now = performance.now();
    let auto = false;
    for (const p of this.pings.values()) {
      if (now - p.sent > this.opts.pingTimeoutMs) {
        this.terminate(new MonocoreError('MC_AGENT_UNRESPONSIVE', `${this.label}the guest agent did not answer a ping within ${this.opts.pingTimeoutMs} ms`, { timeoutMs: this.opts.pingTimeoutMs, label: this.opts.label }));
        return;
      }
      auto ||= p.auto;
    }
    if (!auto) this.sendPing(true);
  }

  private sendPing(auto: boolean): Promise<number> {
    const payload = randomBytes(8);
    return new Promise((resolve) => {
      this.pings.set(payload.toString('hex'), { resolve, sent: performance.now(), auto });
      this.write(FrameType.PING, 0, 0, payload);
    });
  }

  private assertOpen(): void {
    if (this.ended) throw this.ended;
  }

  private write(type: number, stream: number, channel: number, payload?: Buffer): void {
    if (this.ended) return;
    this.socket.write(encodeFrame(type, stream, channel, payload));
  }

  /** Writes a DATA frame, then waits while the socket's buffer is over the high-water mark. */
  private async writeData(channel: number, data: Buffer): Promise<void> {
    this.assertOpen();
    this.write(FrameType.DATA, 0, channel, data);
    while (!this.ended && this.socket.writableLength > this.opts.writeHighWaterBytes) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.once('drain', done);
        this.socket.once('close', done);
      });
    }
    this.assertOpen();
  }

  private sendCredit(channel: number, stream: number, bytes: number): void {
    if (this.channels.has(channel)) this.write(FrameType.CREDIT, stream, channel, encodeRecords([['bytes', String(bytes)]]));
  }

  private request(records: RecordList, field: string): { channel: number; payload: Buffer } {
    this.assertOpen();
    let payload: Buffer;
    try {
      payload = encodeRecords(records);
    } catch (err) {
      if (err instanceof RecordValueError) throw invalid(err.key === 'arg' ? 'argv' : err.key, 'contains a NUL byte');
      throw err;
    }
    if (payload.length > MAX_PAYLOAD) throw invalid(field, `the request is ${payload.length} bytes; the limit is ${MAX_PAYLOAD} (pass large data through stdin or a file)`);
    if (this.channels.size >= this.opts.maxChannels) {
      throw new MonocoreError('MC_AGENT_TOO_MANY_CHANNELS', `${this.label}${this.channels.size} execs and file transfers are in progress (limit ${this.opts.maxChannels})`, { limit: this.opts.maxChannels });
    }
    const channel = this.nextChannel;
    this.nextChannel = this.nextChannel >= 0xffffffff ? 1 : this.nextChannel + 1;
    return { channel, payload };
  }

  private open(channel: number, type: number, payload: Buffer, handler: ChannelHandler): void {
    this.channels.set(channel, handler);
    this.write(type, 0, channel, payload);
  }

  private endChannel(channel: number): void {
    this.channels.delete(channel);
  }

  private guestError(errno: string, message: string, context: Record<string, unknown>, fileOp: boolean): MonocoreError {
    const details = { errno, ...context };
    if (errno === 'EBUSY') return new MonocoreError('MC_AGENT_TOO_MANY_CHANNELS', `${this.label}guest agent: ${message}`, details);
    if (fileOp && (errno === 'ENOENT' || errno === 'ENOTDIR')) return new MonocoreError('MC_AGENT_FILE_NOT_FOUND', `${this.label}${message}`, details);
    if (fileOp) return new MonocoreError('MC_AGENT_FILE_ERROR', `${this.label}${message}`, details);
    if (errno === 'EINVAL' || errno === 'E2BIG') return new MonocoreError('MC_AGENT_REQUEST_INVALID', `${this.label}guest agent: ${message}`, details);
    return new MonocoreError('MC_AGENT_GUEST_ERROR', `${this.label}guest agent: ${message}`, details);
  }

  /** Free slots of the bulk lane (undefined without one): every transfer returns what it borrowed. */
  get laneSlotsFree(): number | undefined {
    return this.lane?.freeSlots;
  }

  // ---- GuestAgent ------------------------------------------------------------------

  close(): void {
    this.terminate(this.disconnected('closed by the host'), true);
  }

  async ping(options: { timeoutMs?: number } = {}): Promise<number> {
    this.assertOpen();
    if (this.pings.size >= 16) throw new MonocoreError('MC_AGENT_REQUEST_INVALID', `${this.label}16 pings are already in flight`, { field: 'ping' });
    const timeoutMs = options.timeoutMs ?? this.opts.pingTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<number>((_, reject) => {
      timer = setTimeout(() => reject(new MonocoreError('MC_AGENT_UNRESPONSIVE', `${this.label}no answer to a ping within ${timeoutMs} ms`, { timeoutMs })), timeoutMs);
    });
    try {
      const ms = await Promise.race([this.sendPing(false), timeout]);
      if (Number.isNaN(ms)) throw this.ended ?? this.disconnected('ended');
      return ms;
    } finally {
      clearTimeout(timer);
    }
  }

  async signalPid(pid: number, signal: NodeJS.Signals | number): Promise<void> {
    this.assertOpen();
    if (!Number.isInteger(pid) || pid <= 1 || pid > MAX_PID) throw invalid('pid', `${pid} is not a guest pid that may be signalled`);
    this.write(FrameType.SIGNAL, 0, 0, encodeRecords([['sig', String(signalNumber(signal))], ['pid', String(pid)]]));
  }

  async spawn(req: ExecRequest): Promise<GuestProcess> {
    const records = execRecords(req);
    const window = req.windowBytes ?? this.opts.windowBytes;
    if (!Number.isInteger(window) || window < MAX_PAYLOAD || window > MAX_WINDOW) throw invalid('windowBytes', `must be an integer in ${MAX_PAYLOAD}..${MAX_WINDOW}`);
    records.push(['window', String(window)]);
    const wantStdin = req.stdin ?? req.pty !== undefined;
    const { channel, payload } = this.request(records, 'argv');
    const signal = req.signal;
    if (signal?.aborted) throw signal.reason as Error;
    return new Promise<GuestProcess>((resolve, reject) => {
      let proc: Process | undefined;
      const onAbort = (): void => this.write(FrameType.CANCEL, 0, channel, Buffer.alloc(0));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        this.endChannel(channel);
      };
      this.open(channel, FrameType.EXEC, payload, {
        onFrame: (f) => {
          if (!proc) {
            if (f.type === FrameType.STARTED) {
              const r = parseRecords(f.payload);
              proc = new Process(this, channel, r.requireInt('pid', MAX_PID), window, wantStdin, req.pty !== undefined);
              proc.stdinSender?.addCredit(r.int('window', MAX_WINDOW) ?? 0);
              resolve(proc);
              return;
            }
            if (f.type === FrameType.ERROR) {
              const e = errorRecords(f.payload);
              done();
              reject(this.guestError(e.errno, `exec ${JSON.stringify(req.argv[0])}: ${e.message}`, { argv0: req.argv[0] }, false));
              return;
            }
            throw new Violation(`${frameTypeName(f.type)} before STARTED on exec channel ${channel}`);
          }
          switch (f.type) {
            case FrameType.DATA:
              if (f.stream !== 1 && f.stream !== 2) throw new Violation(`DATA on stream ${f.stream} of exec channel ${channel}`);
              if (!proc.out[f.stream].accept(f.payload)) throw new Violation(`DATA beyond the window on channel ${channel} stream ${f.stream}`);
              return;
            case FrameType.CREDIT: {
              if (f.stream !== 0 || !proc.stdinSender) throw new Violation(`CREDIT for stream ${f.stream} of exec channel ${channel}`);
              proc.stdinSender.addCredit(parseRecords(f.payload).requireInt('bytes', MAX_WINDOW));
              return;
            }
            case FrameType.EXIT: {
              const r = parseRecords(f.payload);
              const sig = r.int('signal', 64) ?? null;
              const exit: ExecExit = { exitCode: r.requireInt('code', 255), signal: sig === 0 ? null : sig, timedOut: r.get('timed_out') === '1' };
              const spawnError = r.get('spawn_error');
              if (spawnError !== undefined) exit.spawnError = spawnError.slice(0, 1000);
              done();
              proc.finish(exit);
              return;
            }
            default:
              throw new Violation(`${frameTypeName(f.type)} on exec channel ${channel}`);
          }
        },
        onClose: (err) => {
          signal?.removeEventListener('abort', onAbort);
          if (proc) proc.fail(err);
          else reject(err);
        },
      });
    });
  }

  async exec(req: Omit<ExecRequest, 'stdin'> & BufferedExecOptions): Promise<ExecResult> {
    const t0 = performance.now();
    const max = req.maxOutputBytes ?? MAX_OUTPUT_DEFAULT;
    if (!Number.isInteger(max) || max < 0) throw invalid('maxOutputBytes', 'must be a non-negative integer');
    const { stdin, maxOutputBytes: _max, ...rest } = req;
    void _max;
    const p = await this.spawn({ ...rest, stdin: stdin !== undefined });
    if (stdin !== undefined) p.stdin!.end(typeof stdin === 'string' ? Buffer.from(stdin) : Buffer.from(stdin.buffer, stdin.byteOffset, stdin.byteLength));
    const collect = (s: Readable): Promise<{ data: Buffer; truncated: boolean }> =>
      new Promise((resolve, reject) => {
        const parts: Buffer[] = [];
        let size = 0;
        let truncated = false;
        s.on('data', (d: Buffer) => {
          const room = max - size;
          if (room <= 0) {
            truncated = true;
            return;
          }
          const take = d.length > room ? d.subarray(0, room) : d;
          if (take.length < d.length) truncated = true;
          parts.push(take);
          size += take.length;
        });
        s.once('end', () => resolve({ data: Buffer.concat(parts), truncated }));
        s.once('error', reject);
      });
    const [out, err, exit] = await Promise.all([collect(p.stdout), collect(p.stderr), p.exit]);
    return { ...exit, stdout: out.data, stderr: err.data, truncated: { stdout: out.truncated, stderr: err.truncated }, durationMs: performance.now() - t0 };
  }

  async readFile(path: string, options: { signal?: AbortSignal } = {}): Promise<GuestFileRead> {
    checkPath(path);
    const lane = this.lane;
    const window = lane ? LANE_SLOTS_PER_TRANSFER * LANE_SLOT_BYTES : this.opts.windowBytes;
    const { channel, payload } = this.request([['path', path], ['window', String(window)], ...(lane ? [['lane', '1'] as [string, string]] : [])], 'path');
    return new Promise<GuestFileRead>((resolve, reject) => {
      let body: GuestReadable | undefined;
      let reader: LaneReader | undefined;
      const signal = options.signal;
      const onAbort = (): void => this.write(FrameType.CANCEL, 0, channel, Buffer.alloc(0));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        this.endChannel(channel);
      };
      // With a lane, what ends the read waits until the slots named before it are copied out.
      const ending = (fn: () => void): void => (reader ? reader.finish(fn) : fn());
      this.open(channel, FrameType.FILE_READ, payload, {
        onFrame: (f) => {
          if (!body) {
            if (f.type === FrameType.FILE_INFO) {
              const info = parseFileInfo(f.payload);
              if (lane) {
                const b = quiet(new GuestReadable(window, (n) => reader!.consumed(n)));
                reader = new LaneReader(
                  lane, window,
                  (slot) => this.write(FrameType.LANE_FREE, 0, channel, encodeRecords([['slot', String(slot)]])),
                  (data) => {
                    if (!b.accept(data)) b.destroy(new MonocoreError('MC_AGENT_PROTOCOL_ERROR', `${this.label}lane data beyond the window on read channel ${channel}`, { path }));
                  },
                  (err) => {
                    this.write(FrameType.CANCEL, 0, channel, Buffer.alloc(0));
                    b.destroy(new MonocoreError('MC_AGENT_FILE_ERROR', `${this.label}reading ${path} through the lane: ${err.message}`, { path }));
                  },
                );
                body = b;
                reader.grant();
              } else {
                body = quiet(new GuestReadable(window, (b) => this.sendCredit(channel, 1, b)));
              }
              resolve({ info, body });
              return;
            }
            if (f.type === FrameType.ERROR) {
              const e = errorRecords(f.payload);
              done();
              reject(this.guestError(e.errno, e.message, { path }, true));
              return;
            }
            throw new Violation(`${frameTypeName(f.type)} before FILE_INFO on read channel ${channel}`);
          }
          const b = body;
          if (f.type === FrameType.DATA && f.stream === 1 && !reader) {
            if (!b.accept(f.payload)) throw new Violation(`DATA beyond the window on read channel ${channel}`);
          } else if (f.type === FrameType.LANE && f.stream === 1 && reader) {
            const r = parseRecords(f.payload);
            if (!reader.filled(r.requireInt('slot', LANE_SLOT_BYTES), r.requireInt('len', LANE_SLOT_BYTES))) {
              throw new Violation(`LANE ${r.get('slot')}/${r.get('len')} on read channel ${channel}: not a slot lent to it, or a bad length`);
            }
          } else if (f.type === FrameType.EOF && f.stream === 1) {
            done();
            ending(() => b.finish());
          } else if (f.type === FrameType.ERROR) {
            const e = errorRecords(f.payload);
            done();
            ending(() => b.destroy(e.errno === 'ECANCELED' ? new MonocoreError('MC_AGENT_DISCONNECTED', `${this.label}reading ${path} was cancelled`, { path }) : this.guestError(e.errno, e.message, { path }, true)));
          } else {
            throw new Violation(`${frameTypeName(f.type)} on read channel ${channel}`);
          }
        },
        onClose: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reader?.end();
          if (body) body.destroy(err);
          else reject(err);
        },
      });
    });
  }

  async writeFile(path: string, data: FileSource, options: WriteFileOptions = {}): Promise<{ size: number }> {
    checkPath(path);
    const mode = options.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid('mode', `${mode} is not a permission mode (0..0o7777)`);
    const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    const records: RecordList = [['path', path], ['mode', mode.toString(8)], ['parents', options.parents === false ? '0' : '1']];
    const lane = this.lane;
    if (options.owner !== undefined && options.owner !== '') records.push(['owner', options.owner]);
    const { channel, payload } = this.request(records, 'path');

    // One promise per phase: ready (FILE_READY), then the end (FILE_DONE or ERROR).
    let phase: 'ready' | 'data' = 'ready';
    let settleReady!: (e?: MonocoreError) => void;
    let settleEnd!: (r: { size?: number; error?: MonocoreError; cancelled?: boolean }) => void;
    const ready = new Promise<MonocoreError | undefined>((resolve) => (settleReady = resolve));
    const end = new Promise<{ size?: number; error?: MonocoreError; cancelled?: boolean }>((resolve) => (settleEnd = resolve));
    // Data goes through the lane when there is one (the guest then returns slots), else as DATA frames.
    const sender = lane
      ? new LaneWriter(lane, (slot, len) => this.write(FrameType.LANE, 0, channel, encodeRecords([['slot', String(slot)], ['len', String(len)]])))
      : new CreditSender((d) => this.writeData(channel, d));
    // The guest's end of the channel: a lane write gets back the slots it named to the guest.
    const channelEnded = (err: Error): void => (sender instanceof LaneWriter ? sender.end(err) : sender.fail(err));
    this.open(channel, FrameType.FILE_WRITE, payload, {
      onFrame: (f) => {
        if (phase === 'ready') {
          if (f.type === FrameType.FILE_READY) {
            phase = 'data';
            if (sender instanceof CreditSender) sender.addCredit(parseRecords(f.payload).requireInt('window', MAX_WINDOW));
            settleReady();
            return;
          }
          if (f.type === FrameType.ERROR) {
            const e = errorRecords(f.payload);
            this.endChannel(channel);
            const error = this.guestError(e.errno, e.message, { path }, true);
            channelEnded(error);
            settleReady(error);
            return;
          }
          throw new Violation(`${frameTypeName(f.type)} before FILE_READY on write channel ${channel}`);
        }
        if (f.type === FrameType.CREDIT && f.stream === 0 && sender instanceof CreditSender) {
          sender.addCredit(parseRecords(f.payload).requireInt('bytes', MAX_WINDOW));
        } else if (f.type === FrameType.LANE_FREE && sender instanceof LaneWriter) {
          const slot = parseRecords(f.payload).requireInt('slot', LANE_SLOT_BYTES);
          if (!sender.returned(slot)) throw new Violation(`LANE_FREE ${slot} on write channel ${channel}: not a slot lent to it`);
        } else if (f.type === FrameType.FILE_DONE) {
          this.endChannel(channel);
          channelEnded(this.disconnected('the write ended'));
          settleEnd({ size: parseRecords(f.payload).requireInt('size') });
        } else if (f.type === FrameType.ERROR) {
          const e = errorRecords(f.payload);
          this.endChannel(channel);
          const error = this.guestError(e.errno, e.message, { path }, true);
          channelEnded(error);
          settleEnd(e.errno === 'ECANCELED' ? { cancelled: true } : { error });
        } else {
          throw new Violation(`${frameTypeName(f.type)} on write channel ${channel}`);
        }
      },
      onClose: (err) => {
        channelEnded(err);
        settleReady(err);
        settleEnd({ error: err });
      },
    });
    const readyErr = await ready;
    if (readyErr) throw readyErr;

    const cancel = async (why: Error): Promise<never> => {
      this.write(FrameType.CANCEL, 0, channel, Buffer.alloc(0));
      const r = await end; // the guest removes its temp file and confirms (or the session ends)
      throw r.error && !r.cancelled && r.error.code !== 'MC_AGENT_DISCONNECTED' ? r.error : why;
    };
    let size = 0;
    const onAbort = (): void => sender.fail(options.signal!.reason as Error);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (options.signal?.aborted) return await cancel(options.signal.reason as Error);
      for await (const chunk of chunksOf(data)) {
        size += chunk.length;
        if (size > maxBytes) {
          return await cancel(new MonocoreError('MC_AGENT_FILE_TOO_LARGE', `${this.label}${path}: the upload is larger than ${maxBytes} bytes; nothing was written`, { path, maxBytes }));
        }
        await sender.write(chunk);
      }
      if (sender instanceof LaneWriter) sender.flush();
    } catch (err) {
      const r = await Promise.race([end, Promise.resolve(undefined)]);
      if (r?.error) throw r.error; // the guest ended it first (disk full, session gone)
      if (err instanceof MonocoreError && err.code === 'MC_AGENT_FILE_TOO_LARGE') throw err;
      return await cancel(err as Error);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    this.write(FrameType.EOF, 0, channel, Buffer.alloc(0));
    const r = await end;
    if (r.error) throw r.error;
    if (r.size !== size) throw new MonocoreError('MC_AGENT_PROTOCOL_ERROR', `${this.label}${path}: the guest wrote ${r.size} bytes of ${size}`, { path, reason: 'size mismatch' });
    return { size };
  }

  async stat(path: string): Promise<GuestFileInfo | undefined> {
    checkPath(path);
    const { channel, payload } = this.request([['path', path]], 'path');
    return new Promise((resolve, reject) => {
      this.open(channel, FrameType.STAT, payload, {
        onFrame: (f) => {
          if (f.type === FrameType.FILE_INFO) {
            const info = parseFileInfo(f.payload);
            this.endChannel(channel);
            resolve(info);
          } else if (f.type === FrameType.ERROR) {
            const e = errorRecords(f.payload);
            this.endChannel(channel);
            if (e.errno === 'ENOENT' || e.errno === 'ENOTDIR') resolve(undefined);
            else reject(this.guestError(e.errno, e.message, { path }, true));
          } else {
            throw new Violation(`${frameTypeName(f.type)} on stat channel ${channel}`);
          }
        },
        onClose: reject,
      });
    });
  }

  async tarOut(dir: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    checkPath(dir, 'dir');
    const info = await this.stat(dir);
    if (!info) throw new MonocoreError('MC_AGENT_FILE_NOT_FOUND', `${this.label}${dir}: no such directory`, { path: dir });
    if (info.type !== 'dir') throw new MonocoreError('MC_AGENT_FILE_ERROR', `${this.label}${dir}: not a directory`, { path: dir, errno: 'ENOTDIR' });
    const p = await this.spawn({ argv: ['tar', '-c', '-f', '-', '-C', dir, '.'], tool: 'busybox', user: '0:0', clearEnv: true, ...(options.signal ? { signal: options.signal } : {}) });
    const stderr: Buffer[] = [];
    p.stderr.on('data', (d: Buffer) => stderr.length < 64 && stderr.push(d));
    const out = quiet(new Readable({ read: () => p.stdout.resume() }));
    p.stdout.on('data', (d: Buffer) => {
      if (!out.push(d)) p.stdout.pause();
    });
    p.stdout.once('error', (e) => out.destroy(e));
    void p.exit.then(
      (exit) => {
        if (exit.exitCode === 0) {
          p.stdout.once('end', () => out.push(null));
          if (p.stdout.readableEnded) out.push(null);
        } else {
          out.destroy(new MonocoreError('MC_AGENT_FILE_ERROR', `${this.label}tar of ${dir} failed (exit ${exit.exitCode}): ${Buffer.concat(stderr).toString('utf8').trim().slice(0, 500)}`, { path: dir, exitCode: exit.exitCode }));
        }
      },
      (e: Error) => out.destroy(e),
    );
    return out;
  }

  async tarIn(dir: string, tar: FileSource, options: { signal?: AbortSignal; maxBytes?: number } = {}): Promise<void> {
    checkPath(dir, 'dir');
    const mk = await this.exec({ argv: ['mkdir', '-p', dir], tool: 'busybox', user: '0:0', clearEnv: true });
    if (mk.exitCode !== 0) throw new MonocoreError('MC_AGENT_FILE_ERROR', `${this.label}${dir}: ${mk.stderr.toString('utf8').trim().slice(0, 500)}`, { path: dir });
    const p = (await this.spawn({ argv: ['tar', '-x', '-f', '-', '-C', dir], tool: 'busybox', user: '0:0', clearEnv: true, stdin: true, ...(options.signal ? { signal: options.signal } : {}) })) as Process;
    const stderr: Buffer[] = [];
    p.stderr.on('data', (d: Buffer) => stderr.length < 64 && stderr.push(d));
    p.stdout.resume();
    const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    let size = 0;
    try {
      for await (const chunk of chunksOf(tar)) {
        size += chunk.length;
        if (size > maxBytes) {
          throw new MonocoreError('MC_AGENT_FILE_TOO_LARGE', `${this.label}the tar stream into ${dir} is larger than ${maxBytes} bytes; extraction was stopped (files already extracted stay)`, { path: dir, maxBytes });
        }
        await p.stdinSender!.write(chunk);
      }
    } catch (err) {
      // tar may have ended early (bad archive): its exit says why; otherwise stop it.
      await p.kill();
      const exit = await p.exit.catch(() => undefined);
      if (exit && exit.exitCode !== 0 && !exit.timedOut && !(err instanceof MonocoreError && err.code === 'MC_AGENT_FILE_TOO_LARGE')) {
        throw new MonocoreError('MC_AGENT_FILE_ERROR', `${this.label}extracting into ${dir} failed (exit ${exit.exitCode}): ${Buffer.concat(stderr).toString('utf8').trim().slice(0, 500)}`, { path: dir, exitCode: exit.exitCode });
      }
      throw err;
    }
    p.stdin!.end();
    const exit = await p.exit;
    if (exit.exitCode !== 0) {
      throw new MonocoreError('MC_AGENT_FILE_ERROR', `${this.label}extracting into ${dir} failed (exit ${exit.exitCode}): ${Buffer.concat(stderr).toString('utf8').trim().slice(0, 500)}`, { path: dir, exitCode: exit.exitCode });
    }
  }

  async refresh(identity: GuestIdentity = {}): Promise<RefreshResult> {
    const records: RecordList = [];
    const clock = identity.clock ?? new Date();
    if (!(clock instanceof Date) || Number.isNaN(clock.getTime()) || clock.getTime() < 0) throw invalid('clock', 'is not a valid date');
    records.push(['time_ns', (BigInt(clock.getTime()) * 1_000_000n).toString()]);
    const entropy = identity.entropy ?? randomBytes(64);
    if (entropy.length < 16 || entropy.length > 512) throw invalid('entropy', 'must be 16..512 bytes');
    records.push(['entropy', Buffer.from(entropy).toString('hex')]);
    if (identity.hostname !== undefined) {
      if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(identity.hostname)) throw invalid('hostname', `${JSON.stringify(identity.hostname)} is not a hostname`);
      records.push(['hostname', identity.hostname]);
    }
    if (identity.workdir !== undefined) {
      if (!identity.workdir.startsWith('/') || identity.workdir.includes('\0')) throw invalid('workdir', `${JSON.stringify(identity.workdir)} is not an absolute path`);
      records.push(['workdir', identity.workdir]);
    }
    if (identity.user !== undefined) {
      if (identity.user.includes('\0')) throw invalid('user', 'contains a NUL byte');
      records.push(['user', identity.user]);
    }
    if (identity.env !== undefined) {
      records.push(['env_clear', '1']);
      identity.env.forEach((e, i) => {
        if (!e.includes('=') || e.startsWith('=')) throw invalid(`env[${i}]`, 'is not KEY=value');
        records.push(['env', e]);
      });
    }
    const net = identity.network;
    if (net) {
      const macRe = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
      net.interfaces.forEach((n, i) => {
        if (!macRe.test(n.mac)) throw invalid(`network.interfaces[${i}].mac`, `${JSON.stringify(n.mac)} is not a MAC address`);
        if (n.newMac !== undefined && !macRe.test(n.newMac)) throw invalid(`network.interfaces[${i}].newMac`, `${JSON.stringify(n.newMac)} is not a MAC address`);
        if (!/^[0-9a-fA-F.:]+\/\d{1,3}$/.test(n.cidr)) throw invalid(`network.interfaces[${i}].cidr`, `${JSON.stringify(n.cidr)} is not an address/prefix`);
        if (n.gateway !== undefined && !/^[0-9a-fA-F.:]+$/.test(n.gateway)) throw invalid(`network.interfaces[${i}].gateway`, `${JSON.stringify(n.gateway)} is not an address`);
        records.push(['nic', `${n.mac} ${n.newMac ?? '-'} ${n.cidr} ${n.gateway ?? '-'}`]);
      });
      if (net.hosts !== undefined) {
        records.push(['hosts_clear', '1']);
        net.hosts.forEach((h, i) => {
          if (h.includes('\n')) throw invalid(`network.hosts[${i}]`, 'contains a newline');
          records.push(['host', h]);
        });
      }
      for (const [i, d] of (net.dns ?? []).entries()) {
        if (!/^[0-9a-fA-F.:]+$/.test(d)) throw invalid(`network.dns[${i}]`, `${JSON.stringify(d)} is not an address`);
        records.push(['dns', d]);
      }
    }
    const { channel, payload } = this.request(records, 'identity');
    return new Promise((resolve, reject) => {
      this.open(channel, FrameType.REFRESH, payload, {
        onFrame: (f) => {
          this.endChannel(channel);
          if (f.type === FrameType.REFRESHED) {
            const r = parseRecords(f.payload);
            resolve({ entropyBits: r.requireInt('entropy_bits', 1 << 16), clockStepMs: r.signedInt('clock_step_ms') ?? 0 });
          } else if (f.type === FrameType.ERROR) {
            const e = errorRecords(f.payload);
            reject(this.guestError(e.errno, `refresh: ${e.message}`, {}, false));
          } else {
            throw new Violation(`${frameTypeName(f.type)} on refresh channel ${channel}`);
          }
        },
        onClose: reject,
      });
    });
  }

  // for Process
  /** @internal */ _sendCredit(channel: number, stream: number, bytes: number): void {
    this.sendCredit(channel, stream, bytes);
  }
  /** @internal */ _writeData(channel: number, data: Buffer): Promise<void> {
    return this.writeData(channel, data);
  }
  /** @internal */ _control(type: number, channel: number, records: RecordList): void {
    this.assertOpen();
    this.write(type, 0, channel, encodeRecords(records));
  }
  /** @internal */ _alive(channel: number): boolean {
    return !this.ended && this.channels.has(channel);
  }
}

function execRecords(req: ExecRequest): RecordList {
  if (!Array.isArray(req.argv) || req.argv.length === 0) throw invalid('argv', 'must be a non-empty array of strings');
  const records: RecordList = [];
  req.argv.forEach((a, i) => {
    if (typeof a !== 'string') throw invalid(`argv[${i}]`, 'is not a string');
    records.push(['arg', a]);
  });
  if (req.argv[0] === '') throw invalid('argv[0]', 'is empty');
  const env = Array.isArray(req.env) ? req.env : Object.entries(req.env ?? {}).map(([k, v]) => `${k}=${v}`);
  env.forEach((e, i) => {
    if (typeof e !== 'string' || !e.includes('=') || e.startsWith('=')) throw invalid(`env[${i}]`, `${JSON.stringify(e)} is not KEY=value`);
    records.push(['env', e]);
  });
  if (req.clearEnv) records.push(['env_clear', '1']);
  if (req.cwd !== undefined) records.push(['cwd', checkPath(req.cwd, 'cwd')]);
  if (req.user !== undefined && req.user !== '') records.push(['user', req.user]);
  if (req.stdin ?? req.pty !== undefined) records.push(['stdin', '1']);
  if (req.pty !== undefined) {
    const { cols, rows } = req.pty;
    if (!Number.isInteger(cols) || cols < 1 || cols > 65535 || !Number.isInteger(rows) || rows < 1 || rows > 65535) throw invalid('pty', 'cols and rows must be integers in 1..65535');
    records.push(['pty', `${cols} ${rows}`]);
  }
  if (req.timeoutMs !== undefined) {
    if (!Number.isInteger(req.timeoutMs) || req.timeoutMs < 1 || req.timeoutMs > 2 ** 31) throw invalid('timeoutMs', 'must be a positive integer of ms');
    records.push(['timeout_ms', String(req.timeoutMs)]);
  }
  if (req.killTreeOnExit) records.push(['kill_tree_on_exit', '1']);
  if (req.tool !== undefined) {
    if (req.tool !== 'busybox') throw invalid('tool', `${JSON.stringify(req.tool)} is not a tool the agent has`);
    records.push(['tool', 'busybox']);
  }
  return records;
}

/** A running exec: GuestProcess. */
class Process implements GuestProcess {
  readonly stdout: GuestReadable;
  readonly stderr: GuestReadable;
  readonly out: Record<1 | 2, GuestReadable>;
  readonly stdin: GuestWritable | null = null;
  readonly stdinSender?: CreditSender;
  readonly exit: Promise<ExecExit>;
  private settle!: { resolve: (e: ExecExit) => void; reject: (e: Error) => void };
  private exited = false;

  constructor(
    private readonly session: AgentSession,
    private readonly channel: number,
    readonly pid: number,
    window: number,
    wantStdin: boolean,
    private readonly pty: boolean,
  ) {
    this.stdout = quiet(new GuestReadable(window, (b) => session._sendCredit(channel, 1, b)));
    this.stderr = quiet(new GuestReadable(window, (b) => session._sendCredit(channel, 2, b)));
    this.out = { 1: this.stdout, 2: this.stderr };
    if (wantStdin) {
      this.stdinSender = new CreditSender((d) => session._writeData(channel, d));
      this.stdin = quiet(new GuestWritable(this.stdinSender, () => {
        if (session._alive(channel)) session._control(FrameType.EOF, channel, []);
      }));
    }
    this.exit = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.exit.catch(() => {}); // observed through `exit` by callers; never unhandled
  }

  finish(exit: ExecExit): void {
    this.exited = true;
    this.stdout.finish();
    this.stderr.finish();
    // Writes after the exit go nowhere (like a closed pipe), quietly.
    this.stdinSender?.fail(new MonocoreError('MC_AGENT_DISCONNECTED', `exec ${this.pid} has exited; its stdin is closed`, {}));
    this.settle.resolve(exit);
  }

  fail(err: MonocoreError): void {
    this.stdout.destroy(err);
    this.stderr.destroy(err);
    this.stdinSender?.fail(err);
    this.stdin?.destroy(err);
    this.settle.reject(err);
  }

  async signal(signal: NodeJS.Signals | number, target: 'process' | 'group' | 'tree' = 'process'): Promise<void> {
    const n = signalNumber(signal);
    if (target !== 'process' && target !== 'group' && target !== 'tree') throw invalid('target', `${JSON.stringify(target)} is not process, group or tree`);
    if (this.exited || !this.session._alive(this.channel)) return;
    this.session._control(FrameType.SIGNAL, this.channel, [['sig', String(n)], ['target', target]]);
  }

  async resize(cols: number, rows: number): Promise<void> {
    if (!this.pty) throw invalid('pty', 'resize needs an exec with a pty');
    if (!Number.isInteger(cols) || cols < 1 || cols > 65535 || !Number.isInteger(rows) || rows < 1 || rows > 65535) throw invalid('pty', 'cols and rows must be integers in 1..65535');
    if (this.exited || !this.session._alive(this.channel)) return;
    this.session._control(FrameType.RESIZE, this.channel, [['cols', String(cols)], ['rows', String(rows)]]);
  }

  async kill(): Promise<void> {
    if (this.exited || !this.session._alive(this.channel)) return;
    this.session._control(FrameType.CANCEL, this.channel, []);
  }
}

