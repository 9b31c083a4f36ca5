import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { registerLocalInbox, type LocalInbox } from './local-inboxes.js';
import { ReaderConnection } from './reader-connection.js';
import { RELAY_MAX_CHUNK_BYTES, decodeEntry, type RelayEntry } from './relay-protocol.js';
import { RespError, RespProtocolError, type RespLimits, type RespValue } from './resp-reader.js';

export interface InboxOptions {
  /** A shared, non-blocking connection: creation, TTL refresh, trimming. A blocking duplicate is made for reading. */
  redis: Redis;
  key: string;
  /** The key's TTL while its reader lives; refreshed every third of it (default 30 s). */
  ttlMs?: number;
  logger: Logger;
  /** Called with every batch of entries, in stream order. Must not throw. */
  onEntries(entries: RelayEntry[]): void;
  /**
   * Read what is already in the stream first (a worker answers the calls its
   * predecessor on this host left unread) instead of only what comes after open().
   */
  fromStart?: boolean;
  /**
   * `false`: writers in this process reach the inbox through Redis too, like writers elsewhere
   * (tests, comparisons). By default they hand their entries over in process (append-entry.ts).
   */
  inProcess?: false;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Entries one XREAD returns at most. */
const READ_COUNT = 512;
/** How long one XREAD blocks (ms), and how much longer its reply may take before the connection is given up. */
const BLOCK_MS = 2000;
const REPLY_GRACE_MS = 10_000;
/**
 * What an XREAD reply may hold. Fields are at most an entry's data (RELAY_MAX_CHUNK_BYTES) or a
 * call's JSON; a larger one is skipped and its entry reaches the handler damaged (its call fails).
 */
const LIMITS: RespLimits = { maxBulk: 4 * RELAY_MAX_CHUNK_BYTES, maxArray: 2 * READ_COUNT, maxDepth: 6 };

/**
 * A Redis stream one process reads, with one blocking XREAD loop on a
 * connection of its own, and everyone else appends to (`XADD … NOMKSTREAM`).
 * The key exists exactly while its reader lives: created at open, kept alive
 * by a TTL refreshed every ttl/3, deleted at close. So a writer whose XADD
 * returns null knows the reader is gone, and a crashed reader's inbox expires
 * by itself. Consumed entries are trimmed after every batch (XTRIM MINID):
 * the stream only ever holds what is unread, which flow control bounds.
 *
 * Writers in the reader's own process skip Redis (append-entry.ts): the inbox is registered in
 * the process (local-inboxes.ts) before its key exists and until just before the key is
 * deleted, takes their entries with `accept`, and delivers them on a later turn of the event
 * loop, through the same handler and in arrival order with what it reads from Redis.
 */
export class Inbox implements LocalInbox {
  readonly key: string;
  readonly #o: InboxOptions;
  readonly #ttlMs: number;
  #conn?: ReaderConnection;
  #lastId = '0-0';
  /** The entries before this id were read: trimmed before the next read. */
  #trimTo?: string;
  #closed = false;
  #timer?: NodeJS.Timeout;
  #loop?: Promise<void>;
  /** Entries handed over in process since the last batch, and whether a turn to deliver them is scheduled. */
  readonly #local: RelayEntry[] = [];
  #localTurn = false;
  #localSeq = 0;
  #unregister?: () => void;

  private constructor(options: InboxOptions) {
    this.#o = options;
    this.key = options.key;
    this.#ttlMs = options.ttlMs ?? 30_000;
  }

  static async open(options: InboxOptions): Promise<Inbox> {
    const inbox = new Inbox(options);
    // Reachable in process before it is in Redis: a writer here never goes to Redis for it.
    if (options.inProcess !== false) inbox.#unregister = registerLocalInbox(options.redis, options.key, inbox);
    try {
      await inbox.#create(options.fromStart === true);
    } catch (err) {
      inbox.#closed = true;
      inbox.#unregister?.();
      throw err;
    }
    inbox.#timer = setInterval(() => void inbox.#keepAlive(), Math.max(100, Math.floor(inbox.#ttlMs / 3)));
    inbox.#timer.unref();
    inbox.#loop = inbox.#read();
    return inbox;
  }

  /** Creates the key (a marker entry) and sets where reading starts. */
  async #create(fromStart: boolean): Promise<void> {
    const { redis } = this.#o;
    const res = await redis.multi().exists(this.key).xadd(this.key, '*', 'k', 'open').pexpire(this.key, this.#ttlMs).exec();
    const existed = Number(res?.[0]?.[1] ?? 0) === 1;
    const marker = String(res?.[1]?.[1] ?? '0-0');
    if (!(fromStart && existed)) this.#lastId = marker;
  }

  async #keepAlive(): Promise<void> {
    if (this.#closed) return;
    try {
      const ok = await this.#o.redis.pexpire(this.key, this.#ttlMs);
      if (ok === 0 && !this.#closed) {
        // Gone (a Redis restart without persistence, or this process stalled past the TTL): writers
        // saw their XADDs refused meanwhile, which failed their calls. Be reachable again.
        this.#o.logger.warn({ inbox: this.key }, 'inbox key had vanished: creating it again');
        await this.#create(false);
      }
    } catch (err) {
      this.#o.logger.debug({ err: (err as Error).message, inbox: this.key }, 'inbox keep-alive failed');
    }
  }

  async #read(): Promise<void> {
    // Failures in a row: the first is a warning, the rest (Redis down for a while) debug lines,
    // with the retry slowing from 0.2 to 2 s; recovery is logged once.
    let failures = 0;
    const failed = async (msg: string, err: Error): Promise<void> => {
      const log = { err: err.message, inbox: this.key, failures: ++failures };
      if (failures === 1) this.#o.logger.warn(log, msg);
      else this.#o.logger.debug(log, msg);
      await sleep(Math.min(2000, 200 * 2 ** Math.min(failures - 1, 4)));
    };
    while (!this.#closed) {
      let res: RespValue;
      try {
        // A connection of the inbox's own (reader-connection.ts): bulk fields land in slabs, uncopied.
        if (!this.#conn) {
          const conn = await ReaderConnection.open(this.#o.redis.options, LIMITS);
          if (this.#closed) return conn.close();
          this.#conn = conn;
        }
        if (this.#trimTo !== undefined) {
          // Everything before the last entry read is consumed: keep only what is unread. Sent ahead of the read, no round trip of its own.
          void this.#conn.command(['XTRIM', this.key, 'MINID', this.#trimTo]).catch(() => undefined);
          this.#trimTo = undefined;
        }
        res = await this.#conn.command(['XREAD', 'COUNT', String(READ_COUNT), 'BLOCK', String(BLOCK_MS), 'STREAMS', this.key, this.#lastId], BLOCK_MS + REPLY_GRACE_MS);
      } catch (err) {
        if (this.#closed) return;
        // An error reply leaves the connection usable; anything else (gone, timed out, not RESP) ends it.
        if (!(err instanceof RespError)) this.#dropConnection();
        await failed('inbox read failed; retrying', err as Error);
        continue;
      }
      if (failures > 0) {
        this.#o.logger.info({ inbox: this.key, failures }, 'inbox reads again');
        failures = 0;
      }
      if (res === null || this.#closed) continue;
      let batch: RelayEntry[];
      try {
        batch = this.#entries(res);
      } catch (err) {
        this.#dropConnection();
        await failed('inbox read an unreadable reply; retrying', err as Error);
        continue;
      }
      this.#trimTo = this.#lastId;
      this.#deliver(batch);
    }
  }

  #dropConnection(): void {
    this.#conn?.close();
    this.#conn = undefined;
  }

  /** LocalInbox: an entry from a writer in this process (append-entry.ts), delivered on a later turn. */
  accept(entry: RelayEntry): string | null {
    if (this.#closed) return null;
    entry.id = `local-${++this.#localSeq}`;
    this.#local.push(entry);
    if (!this.#localTurn) {
      this.#localTurn = true;
      setImmediate(() => {
        this.#localTurn = false;
        this.#deliver([]);
      });
    }
    return entry.id;
  }

  /**
   * Hands the handler one batch: the entries handed over in process and not yet delivered
   * (they arrived first), then `batch`, read from Redis. The one way entries reach the handler.
   */
  #deliver(batch: RelayEntry[]): void {
    if (this.#closed) return;
    const entries = this.#local.length === 0 ? batch : this.#local.splice(0).concat(batch);
    if (entries.length === 0) return;
    try {
      this.#o.onEntries(entries);
    } catch (err) {
      this.#o.logger.error({ err, inbox: this.key }, 'inbox handler threw');
    }
  }

  /** An XREAD reply (`[[key, [[id, [field, value, …]], …]]]`) → the relay entries in it; throws when it has another shape. */
  #entries(res: RespValue): RelayEntry[] {
    const shape = (): never => {
      throw new RespProtocolError('an XREAD reply of an unexpected shape');
    };
    if (!Array.isArray(res)) shape();
    const batch: RelayEntry[] = [];
    for (const stream of res as RespValue[]) {
      if (!Array.isArray(stream) || stream.length !== 2 || !Array.isArray(stream[1])) shape();
      for (const entry of (stream as RespValue[][])[1] as RespValue[]) {
        if (!Array.isArray(entry) || entry.length !== 2 || !Buffer.isBuffer(entry[0])) shape();
        const [idBuf, fields] = entry as [Buffer, RespValue];
        const id = idBuf.toString('latin1');
        if (!/^\d{1,20}-\d{1,20}$/.test(id)) shape();
        this.#lastId = id;
        if (!Array.isArray(fields)) continue; // an entry deleted while it was read
        const e = decodeEntry(id, fields);
        if (e) batch.push(e);
      }
    }
    return batch;
  }

  /** Stops reading and deletes the key (writers' XADDs are refused from now on, and so are writers in this process). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Out of the process's registry before the key goes: a writer here then reaches Redis, and finds it gone.
    this.#unregister?.();
    this.#local.length = 0;
    clearInterval(this.#timer);
    this.#dropConnection();
    await this.#loop?.catch(() => undefined);
    await this.#o.redis.del(this.key).catch(() => undefined);
  }
}
