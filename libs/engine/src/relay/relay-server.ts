import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { MonocoreError, isMonocoreError } from '../errors/index.js';
import { Keys } from '../state/keys.js';
import { releaseSlab } from '../streams/slabs.js';
import type { GuestAgent, GuestProcess } from '../vm/guest-agent.js';
import { appendEntry, appendWireEntry, type AppendOptions } from './append-entry.js';
import { InFlight } from './in-flight.js';
import { Inbox } from './inbox.js';
import { WireEntry } from './wire-entry.js';
import {
  CallMetaSchema,
  CreditMetaSchema,
  DownKind,
  RELAY_CREDIT_EVERY_BYTES,
  RELAY_MAX_CHUNK_BYTES,
  RELAY_STALE_CALL_MS,
  RELAY_WINDOW_BYTES,
  ResizeMetaSchema,
  SignalMetaSchema,
  UpKind,
  describeTarget,
  type CallMeta,
  type EndMeta,
  type OpenMeta,
  type RelayEntry,
  type RelayTarget,
} from './relay-protocol.js';

/** What the relay needs from the worker that hosts it. */
export interface RelayHost {
  /** `<pid>@<started_at>` of this worker process (its host hash): the API notices a restart by it. */
  readonly worker: string;
  /**
   * The agent of the target's VM on this host, or throws the error the caller
   * gets (MC_SANDBOX_NOT_RUNNING, MC_SANDBOX_LOST, MC_ORCH_SERVICE_NOT_RUNNING…).
   */
  agentOf(target: RelayTarget): Promise<GuestAgent>;
  /** The error a call on the target ends with when the agent failed under it (e.g. its VM died: MC_SANDBOX_LOST). */
  mapError(target: RelayTarget, err: unknown): Promise<unknown>;
  /** A call on the target started or ended (last activity, for idle timeouts). */
  onActivity(target: RelayTarget): void;
  /** The error for a call a previous worker process on this host left unanswered. */
  restarted(target: RelayTarget): MonocoreError;
  /** Delete a sandbox running here: kill its VM, delete its disk, record it `deleted`. */
  deleteSandbox(id: string): Promise<void>;
  /** Pause a sandbox running here (record it `paused`), or resume one paused here (record it `running`). */
  pauseSandbox(id: string): Promise<void>;
  resumeSandbox(id: string): Promise<void>;
  /** Fork a sandbox running here into `children` (recorded `creating` here by the API): each ends `running` or `failed`. */
  forkSandbox(id: string, children: readonly string[]): Promise<void>;
}

export interface RelayServerOptions {
  redis: Redis;
  hostId: string;
  host: RelayHost;
  logger: Logger;
  /** How often the API inboxes of running calls are checked for a vanished API (default 5000 ms). */
  apiCheckMs?: number;
  /** `false`: entries to and from an API in this process go through Redis too (tests, comparisons). */
  inProcess?: false;
}

/** Output pieces at least this large go through a reused entry buffer (file data, bulk output); smaller ones as they are. */
const BULK_ENTRY_BYTES = 64 << 10;

const targetKey = (t: RelayTarget): string => (t.kind === 'sandbox' ? `sandbox:${t.id}` : `service:${t.name}`);

/**
 * The worker side of the relay (relay-protocol.ts): reads this host's inbox,
 * runs each call against the target VM's guest agent, and streams the answers
 * back to the calling API's inbox with end-to-end flow control.
 */
export class RelayServer {
  readonly #o: RelayServerOptions;
  readonly #calls = new Map<string, ServerCall>();
  #inbox?: Inbox;
  #timer?: NodeJS.Timeout;

  private constructor(options: RelayServerOptions) {
    this.#o = options;
  }

  static async start(options: RelayServerOptions): Promise<RelayServer> {
    const s = new RelayServer(options);
    s.#inbox = await Inbox.open({
      redis: options.redis,
      key: Keys.inbox(`host:${options.hostId}`),
      logger: options.logger,
      // Calls a predecessor on this host left unread are answered (not dropped), so no caller waits for them.
      fromStart: true,
      ...(options.inProcess === false ? { inProcess: false } : {}),
      onEntries: (entries) => {
        for (const e of entries) s.#dispatch(e);
      },
    });
    s.#timer = setInterval(() => void s.#checkApis(), options.apiCheckMs ?? 5000);
    s.#timer.unref();
    return s;
  }

  /** Calls in flight on a target (an idle timeout does not end a sandbox that is being used). */
  activeCalls(target: RelayTarget): number {
    const key = targetKey(target);
    let n = 0;
    for (const c of this.#calls.values()) if (c.targetKey === key) n++;
    return n;
  }

  get inFlight(): number {
    return this.#calls.size;
  }

  #dispatch(e: RelayEntry): void {
    if (e.kind === UpKind.call) {
      const parsed = CallMetaSchema.safeParse(e.json);
      if (!parsed.success) {
        this.#o.logger.warn({ call: e.call, issue: parsed.error.issues[0]?.message }, 'relay: unreadable call; ignored');
        return;
      }
      const meta = parsed.data;
      const call = new ServerCall(e.call, meta, this.#o, () => this.#calls.delete(e.call));
      if (Date.now() - meta.sent > RELAY_STALE_CALL_MS) {
        // Left by a worker process of this host that died before reading it.
        void call.failWith(this.#o.host.restarted(meta.target));
        return;
      }
      this.#calls.set(e.call, call);
      void call.run();
      return;
    }
    this.#calls.get(e.call)?.onUp(e);
  }

  /** Cancel calls whose API went away (its inbox expired): nobody will read or credit them. */
  async #checkApis(): Promise<void> {
    const replies = [...new Set([...this.#calls.values()].map((c) => c.meta.reply))];
    if (replies.length === 0) return;
    try {
      const pipe = this.#o.redis.pipeline();
      for (const r of replies) pipe.exists(r);
      const res = (await pipe.exec()) ?? [];
      const gone = new Set(replies.filter((_, i) => Number(res[i]?.[1] ?? 1) === 0));
      for (const c of this.#calls.values()) if (gone.has(c.meta.reply)) c.cancel('the calling API went away');
    } catch (err) {
      this.#o.logger.debug({ err: (err as Error).message }, 'relay: API liveness check failed');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    for (const c of [...this.#calls.values()]) c.cancel('the worker is shutting down');
    await this.#inbox?.close();
  }
}

/** A queue of bytes sent up by the API (stdin, upload) that an async consumer pulls. */
class UpQueue {
  readonly #chunks: Buffer[] = [];
  #ended = false;
  #error?: Error;
  #waiter?: () => void;

  push(b: Buffer): void {
    this.#chunks.push(b);
    this.#wake();
  }

  end(): void {
    this.#ended = true;
    this.#wake();
  }

  fail(err: Error): void {
    this.#error ??= err;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /**
   * The chunks as they come. With `reuse`, a chunk read into a slab is given back when the
   * consumer asks for the next one: only for consumers that are done with a chunk by then
   * (GuestAgent's writeFile and tarIn have written or copied it).
   */
  async *drain(onConsumed: (n: number) => void, reuse = false): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.#error) throw this.#error;
      const c = this.#chunks.shift();
      if (c) {
        onConsumed(c.length);
        yield c;
        if (reuse) releaseSlab(c);
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }
}

class ServerCall {
  readonly targetKey: string;
  readonly #abort = new AbortController();
  readonly #up = new UpQueue();
  #proc?: GuestProcess;
  #done = false;
  #downSent = 0;
  #downCredited = 0;
  #creditWaiter?: () => void;
  #upConsumed = 0;
  #upCredited = 0;
  readonly #downInFlight = new InFlight();
  /** Control messages that came before the process existed. */
  readonly #early: RelayEntry[] = [];
  readonly #append: AppendOptions;

  constructor(
    readonly id: string,
    readonly meta: CallMeta,
    readonly o: RelayServerOptions,
    readonly forget: () => void,
  ) {
    this.targetKey = targetKey(meta.target);
    this.#append = o.inProcess === false ? { inProcess: false } : {};
  }

  async run(): Promise<void> {
    const { host, logger } = this.o;
    const t = this.meta.target;
    host.onActivity(t);
    try {
      let end: EndMeta;
      const op = this.meta.op.op;
      if (op === 'delete' || op === 'pause' || op === 'resume' || op === 'fork') {
        if (t.kind !== 'sandbox') throw new MonocoreError('MC_API_BAD_REQUEST', `${describeTarget(t)}: only a sandbox can be ${op}d this way`);
        await this.#send(DownKind.open, { json: { worker: host.worker } satisfies OpenMeta });
        if (op === 'delete') await host.deleteSandbox(t.id);
        else if (op === 'pause') await host.pauseSandbox(t.id);
        else if (op === 'resume') await host.resumeSandbox(t.id);
        else if (this.meta.op.op === 'fork') await host.forkSandbox(t.id, this.meta.op.children);
        end = {};
      } else {
        end = await this.#op(await host.agentOf(t));
      }
      await this.#send(DownKind.end, { json: end });
    } catch (err) {
      if (!this.#done) {
        const mapped = await host.mapError(t, err).catch(() => err);
        if (!isMonocoreError(mapped)) logger.error({ err: mapped, call: this.id, target: describeTarget(t) }, 'relay: call failed unexpectedly');
        await this.failWith(mapped);
      }
    } finally {
      this.#finish();
      host.onActivity(t);
    }
  }

  async #op(agent: GuestAgent): Promise<EndMeta> {
    const op = this.meta.op;
    const signal = this.#abort.signal;
    const worker = this.o.host.worker;
    switch (op.op) {
      case 'exec': {
        const t0 = performance.now();
        const p = await agent.spawn({
          argv: op.argv,
          ...(op.env ? { env: op.env } : {}),
          ...(op.cwd !== undefined ? { cwd: op.cwd } : {}),
          ...(op.user !== undefined ? { user: op.user } : {}),
          stdin: op.stdin || op.tty !== undefined,
          ...(op.tty ? { pty: op.tty } : {}),
          ...(op.timeoutMs !== undefined ? { timeoutMs: op.timeoutMs } : {}),
          signal,
        });
        this.#proc = p;
        await this.#send(DownKind.open, { json: { worker, pid: p.pid } satisfies OpenMeta });
        if (p.stdin) void this.#feedStdin(p);
        for (const e of this.#early.splice(0)) this.onUp(e);
        await Promise.all([this.#pump(p.stdout, DownKind.stdout), this.#pump(p.stderr, DownKind.stderr)]);
        const exit = await p.exit;
        return {
          exit: {
            exitCode: exit.exitCode,
            signal: exit.signal,
            timedOut: exit.timedOut,
            durationMs: Math.round((performance.now() - t0) * 1000) / 1000,
            ...(exit.spawnError !== undefined ? { spawnError: exit.spawnError } : {}),
          },
        };
      }
      case 'read': {
        const f = await agent.readFile(op.path, { signal });
        await this.#send(DownKind.open, { json: { worker, file: f.info } satisfies OpenMeta });
        await this.#pump(f.body, DownKind.stdout);
        return {};
      }
      case 'tar-out': {
        const tar = await agent.tarOut(op.path, { signal });
        await this.#send(DownKind.open, { json: { worker } satisfies OpenMeta });
        await this.#pump(tar, DownKind.stdout);
        return {};
      }
      case 'write': {
        await this.#send(DownKind.open, { json: { worker } satisfies OpenMeta });
        const r = await agent.writeFile(op.path, this.#upStream(), {
          ...(op.mode !== undefined ? { mode: op.mode } : {}),
          ...(op.owner !== undefined ? { owner: op.owner } : {}),
          maxBytes: op.maxBytes,
          signal,
        });
        return { size: r.size };
      }
      case 'tar-in': {
        await this.#send(DownKind.open, { json: { worker } satisfies OpenMeta });
        await agent.tarIn(op.path, this.#upStream(), { maxBytes: op.maxBytes, signal });
        return { size: this.#upConsumed };
      }
      case 'delete':
      case 'pause':
      case 'resume':
      case 'fork':
        throw new MonocoreError('MC_INTERNAL', `${op.op} is not an agent call`);
    }
  }

  /** Bytes from the API as a source the agent pulls; pulling them is consuming them (credit goes back). */
  #upStream(): AsyncIterable<Buffer> {
    return this.#up.drain((n) => this.#consumedUp(n), true);
  }

  #consumedUp(n: number): void {
    this.#upConsumed += n;
    if (this.#upConsumed - this.#upCredited >= RELAY_CREDIT_EVERY_BYTES) {
      this.#upCredited = this.#upConsumed;
      void this.#send(DownKind.credit, { json: { bytes: this.#upConsumed } }).catch(() => undefined);
    }
  }

  async #feedStdin(p: GuestProcess): Promise<void> {
    const stdin = p.stdin!;
    stdin.on('error', () => undefined); // the process may exit without reading its input
    try {
      for await (const chunk of this.#up.drain(() => undefined)) {
        const n = chunk.length;
        // Consumed once the agent's writable took it (it waits for the guest's credit).
        await new Promise<void>((res) => stdin.write(chunk, () => res()));
        this.#consumedUp(n);
      }
      stdin.end();
    } catch {
      stdin.destroy();
    }
  }

  /** Streams a readable down as `kind` entries, within the window, merging what is buffered. */
  async #pump(r: Readable, kind: string): Promise<void> {
    for (;;) {
      while (this.#downSent - this.#downCredited >= RELAY_WINDOW_BYTES && !this.#done) {
        await new Promise<void>((res) => (this.#creditWaiter = res));
      }
      if (this.#done) {
        r.destroy();
        return;
      }
      const chunk = readUpTo(r, RELAY_MAX_CHUNK_BYTES) ?? (await nextChunk(r));
      if (chunk === null) return this.#downInFlight.settle();
      for (let off = 0; off < chunk.length; off += RELAY_MAX_CHUNK_BYTES) {
        const part = chunk.subarray(off, Math.min(chunk.length, off + RELAY_MAX_CHUNK_BYTES));
        this.#downSent += part.length;
        // A few entries in flight; while they are, more output gathers and goes as one entry.
        await this.#downInFlight.add(part.length >= BULK_ENTRY_BYTES ? this.#sendBulk(kind, part) : this.#send(kind, { data: part }));
      }
    }
  }

  onUp(e: RelayEntry): void {
    if (this.#done) return;
    if (e.damaged) {
      // Bytes of the upload were lost on the way: the call must not go on without them.
      void this.failWith(new MonocoreError('MC_INTERNAL', `call ${this.id}: an entry from the API was unreadable (a field over the size limit)`));
      this.cancel('an entry from the API was unreadable');
      return;
    }
    switch (e.kind) {
      case UpKind.data:
        if (e.data) this.#up.push(e.data);
        return;
      case UpKind.eof:
        this.#up.end();
        return;
      case UpKind.credit: {
        const m = CreditMetaSchema.safeParse(e.json);
        if (!m.success) return;
        this.#downCredited = Math.max(this.#downCredited, m.data.bytes);
        const w = this.#creditWaiter;
        this.#creditWaiter = undefined;
        w?.();
        return;
      }
      case UpKind.signal: {
        const m = SignalMetaSchema.safeParse(e.json);
        if (!m.success) return;
        if (!this.#proc) return void this.#early.push(e);
        void this.#proc.signal(m.data.signal as NodeJS.Signals | number, m.data.target).catch(() => undefined);
        return;
      }
      case UpKind.resize: {
        const m = ResizeMetaSchema.safeParse(e.json);
        if (!m.success) return;
        if (!this.#proc) return void this.#early.push(e);
        void this.#proc.resize(m.data.cols, m.data.rows).catch(() => undefined);
        return;
      }
      case UpKind.cancel:
        this.cancel('cancelled by the caller');
        return;
    }
  }

  /** The caller is gone: kill the process tree / abort the transfer (a partial upload is removed by the agent). */
  cancel(why: string): void {
    if (this.#done) return;
    this.o.logger.debug({ call: this.id, why }, 'relay: call cancelled');
    this.#done = true;
    this.#abort.abort(new MonocoreError('MC_AGENT_DISCONNECTED', why));
    this.#up.fail(new MonocoreError('MC_AGENT_DISCONNECTED', why));
    void this.#proc?.kill().catch(() => undefined);
    const w = this.#creditWaiter;
    this.#creditWaiter = undefined;
    w?.();
  }

  async failWith(err: unknown): Promise<void> {
    const e = isMonocoreError(err) ? err : new MonocoreError('MC_INTERNAL', 'the call failed on the worker; see its log');
    await this.#send(DownKind.fail, { json: { code: e.code, message: e.message, details: e.details } }).catch(() => undefined);
  }

  #finish(): void {
    this.#done = true;
    this.#up.fail(new MonocoreError('MC_AGENT_DISCONNECTED', 'call ended'));
    this.forget();
  }

  /**
   * A large piece of a file (or output) sent as a wire entry (wire-entry.ts): a piece the lane
   * read into a slab is sent from it as it is, anything else is copied once into a slab.
   */
  async #sendBulk(kind: string, data: Buffer): Promise<void> {
    const res = await appendWireEntry(this.o.redis, WireEntry.of(this.meta.reply, kind, this.id, data), this.#append);
    if (res === null) this.cancel('the calling API went away (its inbox is gone)');
  }

  async #send(kind: string, extra: { data?: Uint8Array; json?: unknown } = {}): Promise<void> {
    const res = await appendEntry(this.o.redis, this.meta.reply, kind, this.id, extra, this.#append);
    if (res === null) this.cancel('the calling API went away (its inbox is gone)');
  }
}

/**
 * What a paused-mode readable holds, up to `max` bytes, or null when it holds nothing. Not
 * `read()`, which joins everything buffered into a new buffer: a file's 1 MiB lane slots would
 * be copied once more for nothing (`read(n)` hands over a first chunk of exactly n bytes as it is).
 */
function readUpTo(r: Readable, max: number): Buffer | null {
  const n = Math.min(r.readableLength, max);
  return n > 0 ? (r.read(n) as Buffer | null) : (r.read() as Buffer | null);
}

/** Waits for the next buffered chunk of a paused-mode readable; null at its end. Rejects on its error. */
function nextChunk(r: Readable): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      r.off('readable', onReadable);
      r.off('end', onEnd);
      r.off('error', onError);
      r.off('close', onClose);
    };
    const onReadable = (): void => {
      const c = readUpTo(r, RELAY_MAX_CHUNK_BYTES);
      if (c === null) return; // 'end' follows
      cleanup();
      resolve(c);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(null);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => {
      cleanup();
      if (r.readableEnded) resolve(null);
      else reject(r.errored ?? new MonocoreError('MC_AGENT_DISCONNECTED', 'the stream closed before its end'));
    };
    if (r.readableEnded) return resolve(null);
    if (r.errored) return reject(r.errored);
    r.on('readable', onReadable);
    r.on('end', onEnd);
    r.on('error', onError);
    r.on('close', onClose);
  });
}
