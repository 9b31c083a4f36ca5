import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ErrorCodes } from '../errors/codes.js';
import { MonocoreError } from '../errors/index.js';
import { Keys } from '../state/keys.js';
import { appendEntry, appendWireEntry, type AppendOptions } from './append-entry.js';
import { InFlight } from './in-flight.js';
import { Inbox } from './inbox.js';
import { WireEntry } from './wire-entry.js';
import {
  CreditMetaSchema,
  DownKind,
  EndMetaSchema,
  FailMetaSchema,
  OpenMetaSchema,
  RELAY_CREDIT_EVERY_BYTES,
  RELAY_MAX_CHUNK_BYTES,
  RELAY_WINDOW_BYTES,
  UpKind,
  errorFromFail,
  type CallMeta,
  type EndMeta,
  type OpenMeta,
  type RelayEntry,
  type RelayOp,
  type RelayTarget,
} from './relay-protocol.js';

export interface RelayClientOptions {
  /** A shared connection of the API (a blocking duplicate is made for the inbox). */
  redis: Redis;
  logger: Logger;
  /** A call that received nothing for this long has its worker's liveness checked (default 2000 ms). */
  idleCheckMs?: number;
  /** `false`: entries to and from a worker in this process go through Redis too (tests, comparisons). */
  inProcess?: false;
}

export interface CallInput {
  /** The worker host that runs the target. */
  host: string;
  target: RelayTarget;
  op: RelayOp;
  /** The error the call ends with when that host stops heartbeating or restarts (MC_SANDBOX_LOST, MC_EXEC_HOST_LOST). */
  hostLost: (why: string) => MonocoreError;
}

export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

const isCode = (c: string): boolean => Object.hasOwn(ErrorCodes, c);

type CallFinal = { ok: true; meta: EndMeta } | { ok: false; error: MonocoreError };

/**
 * The API side of the relay (relay-protocol.ts): starts calls on worker hosts
 * and receives their answers in this process's inbox. One per API process.
 */
export class RelayClient {
  readonly #o: RelayClientOptions;
  readonly #calls = new Map<string, RelayCall>();
  readonly #append: AppendOptions;
  #inbox?: Inbox;
  #timer?: NodeJS.Timeout;
  #checking = false;

  private constructor(options: RelayClientOptions) {
    this.#o = options;
    this.#append = options.inProcess === false ? { inProcess: false } : {};
  }

  static async open(options: RelayClientOptions): Promise<RelayClient> {
    const c = new RelayClient(options);
    c.#inbox = await Inbox.open({
      redis: options.redis,
      key: Keys.inbox(`api:${randomBytes(8).toString('hex')}`),
      logger: options.logger,
      ...c.#append,
      onEntries: (entries) => c.#dispatch(entries),
    });
    c.#timer = setInterval(() => void c.#checkIdle(), Math.max(100, Math.floor((options.idleCheckMs ?? 2000) / 2)));
    c.#timer.unref();
    return c;
  }

  get inboxKey(): string {
    return this.#inbox!.key;
  }

  /** Calls in flight (for tests and metrics). */
  get inFlight(): number {
    return this.#calls.size;
  }

  /**
   * Sends the call to the host's inbox. Rejects with `hostLost` when that
   * host has no inbox (its worker is gone). The call then runs until its
   * `result` settles; `close()` it when the caller goes away.
   */
  async call(input: CallInput): Promise<RelayCall> {
    const id = `c${Date.now().toString(36)}${randomBytes(6).toString('hex')}`;
    const hostInbox = Keys.inbox(`host:${input.host}`);
    const call = new RelayCall(id, input, this.#o.redis, hostInbox, () => this.#calls.delete(id), this.#append);
    this.#calls.set(id, call);
    const meta: CallMeta = { target: input.target, op: input.op, reply: this.inboxKey, sent: Date.now() };
    const res = await appendEntry(this.#o.redis, hostInbox, UpKind.call, id, { json: meta }, this.#append).catch((err: unknown) => {
      this.#calls.delete(id);
      throw err;
    });
    if (res === null) {
      this.#calls.delete(id);
      throw input.hostLost(`worker host "${input.host}" is not running (no relay inbox)`);
    }
    return call;
  }

  #dispatch(entries: RelayEntry[]): void {
    for (const e of entries) {
      const call = this.#calls.get(e.call);
      if (!call) continue; // a late entry of a call that already ended (e.g. output after a cancel)
      call.onEntry(e, this.#o.logger);
    }
  }

  /** Calls that heard nothing for a while: is their worker still the one that took them? */
  async #checkIdle(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const limit = this.#o.idleCheckMs ?? 2000;
      const now = Date.now();
      const idle = [...this.#calls.values()].filter((c) => now - c.lastHeardAt >= limit);
      if (idle.length === 0) return;
      const hosts = [...new Set(idle.map((c) => c.input.host))];
      const pipe = this.#o.redis.pipeline();
      for (const h of hosts) pipe.exists(Keys.hostAlive(h)).hmget(Keys.host(h), 'pid', 'started_at').exists(Keys.inbox(`host:${h}`));
      const res = (await pipe.exec()) ?? [];
      const state = new Map<string, { alive: boolean; worker: string; inbox: boolean }>();
      hosts.forEach((h, i) => {
        const alive = Number(res[i * 3]?.[1] ?? 0) === 1;
        const [pid, startedAt] = (res[i * 3 + 1]?.[1] ?? []) as Array<string | null>;
        const inbox = Number(res[i * 3 + 2]?.[1] ?? 0) === 1;
        state.set(h, { alive, worker: `${pid ?? '?'}@${startedAt ?? '?'}`, inbox });
      });
      for (const c of idle) {
        const s = state.get(c.input.host)!;
        if (!s.alive || !s.inbox) c.fail(c.input.hostLost(`worker host "${c.input.host}" stopped heartbeating during the call`));
        else if (c.worker !== undefined && c.worker !== s.worker) c.fail(c.input.hostLost(`the worker of host "${c.input.host}" restarted during the call`));
      }
    } catch (err) {
      this.#o.logger.debug({ err: (err as Error).message }, 'relay: liveness check failed');
    } finally {
      this.#checking = false;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    for (const c of [...this.#calls.values()]) c.close();
    await this.#inbox?.close();
  }
}

/**
 * One call in flight, as the API sees it: output to consume (credit flows back
 * as it is consumed), data to send (waits for the worker's credit), control
 * messages, and the result.
 */
export class RelayCall {
  readonly id: string;
  readonly input: CallInput;
  /** Resolves with the worker's first answer (pid, file info); rejects if the call fails first. */
  readonly opened: Promise<OpenMeta>;
  /** Resolves with the call's result once every output chunk was consumed; rejects with its error. */
  readonly result: Promise<EndMeta>;
  /** `<pid>@<started_at>` of the worker that took the call. */
  worker?: string;
  lastHeardAt = Date.now();

  readonly #redis: Redis;
  readonly #hostInbox: string;
  readonly #forget: () => void;
  readonly #append: AppendOptions;
  #resolveOpened!: (m: OpenMeta) => void;
  #rejectOpened!: (e: Error) => void;
  #resolveResult!: (m: EndMeta) => void;
  #rejectResult!: (e: Error) => void;
  /** Output received and not yet consumed (bounded by the worker's window). */
  readonly #queue: OutputChunk[] = [];
  #waiter?: () => void;
  /** The final entry, once received (delivered after the queue drains). */
  #final?: CallFinal;
  #settled = false;
  #consumed = 0;
  #credited = 0;
  #sentUp = 0;
  #creditedUp = 0;
  #upWaiter?: () => void;
  readonly #upInFlight = new InFlight();
  /** Upload bytes gathered for the next data entry (writeBulk). */
  #pending?: WireEntry;

  constructor(id: string, input: CallInput, redis: Redis, hostInbox: string, forget: () => void, append: AppendOptions = {}) {
    this.id = id;
    this.input = input;
    this.#redis = redis;
    this.#hostInbox = hostInbox;
    this.#forget = forget;
    this.#append = append;
    this.opened = new Promise((res, rej) => {
      this.#resolveOpened = res;
      this.#rejectOpened = rej;
    });
    this.result = new Promise((res, rej) => {
      this.#resolveResult = res;
      this.#rejectResult = rej;
    });
    // Callers that only read `result` must not see an unhandled rejection of `opened`.
    this.opened.catch(() => undefined);
    this.result.catch(() => undefined);
  }

  onEntry(e: RelayEntry, logger: Logger): void {
    if (this.#final) return;
    this.lastHeardAt = Date.now();
    if (e.damaged) return this.#protocol(logger, e);
    switch (e.kind) {
      case DownKind.open: {
        const m = OpenMetaSchema.safeParse(e.json);
        if (!m.success) return this.#protocol(logger, e);
        this.worker = m.data.worker;
        this.#resolveOpened(m.data);
        return;
      }
      case DownKind.stdout:
      case DownKind.stderr:
        if (!e.data) return this.#protocol(logger, e);
        this.#queue.push({ stream: e.kind === DownKind.stdout ? 'stdout' : 'stderr', data: e.data });
        this.#wake();
        return;
      case DownKind.credit: {
        const m = CreditMetaSchema.safeParse(e.json);
        if (!m.success) return this.#protocol(logger, e);
        this.#creditedUp = Math.max(this.#creditedUp, m.data.bytes);
        const w = this.#upWaiter;
        this.#upWaiter = undefined;
        w?.();
        return;
      }
      case DownKind.end: {
        const m = EndMetaSchema.safeParse(e.json ?? {});
        if (!m.success) return this.#protocol(logger, e);
        this.#finish({ ok: true, meta: m.data });
        return;
      }
      case DownKind.fail: {
        const m = FailMetaSchema.safeParse(e.json);
        this.#finish({ ok: false, error: m.success ? errorFromFail(m.data, isCode) : new MonocoreError('MC_INTERNAL', 'the worker failed the call without a readable error') });
        return;
      }
      default:
        return this.#protocol(logger, e);
    }
  }

  #protocol(logger: Logger, e: RelayEntry): void {
    logger.warn({ call: this.id, kind: e.kind }, 'relay: unreadable entry from the worker; ending the call');
    this.fail(new MonocoreError('MC_INTERNAL', `call ${this.id}: the worker sent an unreadable "${e.kind}" entry`));
  }

  #finish(f: CallFinal): void {
    if (this.#final) return;
    this.#final = f;
    if (!f.ok) this.#rejectOpened(f.error);
    else this.#resolveOpened({ worker: this.worker ?? '?' });
    this.#wake();
    const w = this.#upWaiter;
    this.#upWaiter = undefined;
    w?.();
    // Without output left to deliver, settle now; else when the consumer has drained it.
    if (this.#queue.length === 0) this.#settle();
  }

  #settle(): void {
    if (this.#settled || !this.#final) return;
    this.#settled = true;
    this.#forget();
    if (this.#final.ok) this.#resolveResult(this.#final.meta);
    else this.#rejectResult(this.#final.error);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** Ends the call with an error now (output not yet consumed is dropped; the worker is told to cancel). */
  fail(error: MonocoreError): void {
    if (this.#final) return;
    this.#queue.length = 0;
    this.#finish({ ok: false, error });
    void this.#send(UpKind.cancel).catch(() => undefined);
  }

  /**
   * Output chunks in order; consuming them returns credit to the worker.
   * Ends after the last chunk when the call succeeded; throws its error when it failed.
   */
  async *output(): AsyncGenerator<OutputChunk> {
    for (;;) {
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#consumed += chunk.data.length;
        if (this.#consumed - this.#credited >= RELAY_CREDIT_EVERY_BYTES) {
          this.#credited = this.#consumed;
          void this.#send(UpKind.credit, { json: { bytes: this.#consumed } }).catch(() => undefined);
        }
        yield chunk;
        continue;
      }
      if (this.#final) {
        this.#settle();
        if (!this.#final.ok) throw this.#final.error;
        return;
      }
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  /** Sends bytes up (stdin, upload), in chunks, waiting for the worker's credit. Rejects once the call ended. */
  async write(data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.byteLength; off += RELAY_MAX_CHUNK_BYTES) {
      const part = data.subarray(off, Math.min(data.byteLength, off + RELAY_MAX_CHUNK_BYTES));
      while (!this.#final && this.#sentUp - this.#creditedUp >= RELAY_WINDOW_BYTES) {
        await new Promise<void>((r) => (this.#upWaiter = r));
      }
      if (this.#final) throw this.#final.ok ? new MonocoreError('MC_INTERNAL', `call ${this.id} already ended`) : this.#final.error;
      this.#sentUp += part.byteLength;
      await this.#upInFlight.add(this.#send(UpKind.data, { data: part }));
    }
  }

  /**
   * Sends bulk bytes up (an upload) in entries of RELAY_MAX_CHUNK_BYTES, copying them straight
   * into the entry's wire form (wire-entry.ts): an HTTP body arrives in 16–64 KiB chunks, and
   * one entry per chunk cost more than the bytes. Holds up to an entry until it is full or
   * `end()` is called, so it is only for data whose consumer waits for the end anyway (stdin
   * uses `write`). Waits for the worker's credit; rejects once the call ended.
   */
  async writeBulk(chunk: Uint8Array): Promise<void> {
    for (let off = 0; off < chunk.byteLength; ) {
      this.#pending ??= new WireEntry(this.#hostInbox, UpKind.data, this.id, RELAY_MAX_CHUNK_BYTES);
      off += this.#pending.append(chunk, off);
      if (this.#pending.room === 0) await this.#flushBulk();
    }
  }

  async #flushBulk(): Promise<void> {
    const entry = this.#pending;
    this.#pending = undefined;
    if (!entry || entry.length === 0) return;
    while (!this.#final && this.#sentUp - this.#creditedUp >= RELAY_WINDOW_BYTES) {
      await new Promise<void>((r) => (this.#upWaiter = r));
    }
    if (this.#final) throw this.#final.ok ? new MonocoreError('MC_INTERNAL', `call ${this.id} already ended`) : this.#final.error;
    this.#sentUp += entry.length;
    const sent = appendWireEntry(this.#redis, entry, this.#append).then((res) => {
      if (res === null && !this.#final) this.fail(this.input.hostLost(`worker host "${this.input.host}" is not running (no relay inbox)`));
    });
    await this.#upInFlight.add(sent);
  }

  /** No more bytes up (stdin closed, upload complete). */
  async end(): Promise<void> {
    await this.#flushBulk();
    await this.#upInFlight.settle();
    await this.#send(UpKind.eof);
  }

  async signal(signal: string | number, target: 'process' | 'group' | 'tree' = 'process'): Promise<void> {
    await this.#send(UpKind.signal, { json: { signal, target } });
  }

  async resize(cols: number, rows: number): Promise<void> {
    await this.#send(UpKind.resize, { json: { cols, rows } });
  }

  /** The caller went away: cancel what still runs (the worker kills the process tree, removes a partial upload). */
  close(): void {
    if (this.#final) {
      this.#queue.length = 0;
      this.#settle();
      return;
    }
    this.fail(new MonocoreError('MC_INTERNAL', `call ${this.id} was closed by its caller`));
  }

  async #send(kind: string, extra: { data?: Uint8Array; json?: unknown } = {}): Promise<void> {
    const res = await appendEntry(this.#redis, this.#hostInbox, kind, this.id, extra, this.#append);
    if (res === null && !this.#final) this.fail(this.input.hostLost(`worker host "${this.input.host}" is not running (no relay inbox)`));
  }
}
