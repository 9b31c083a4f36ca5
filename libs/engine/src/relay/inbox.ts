import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { decodeEntry, type RelayEntry } from './relay-protocol.js';

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
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A Redis stream one process reads, with one blocking XREAD loop on a
 * connection of its own, and everyone else appends to (`XADD … NOMKSTREAM`).
 * The key exists exactly while its reader lives: created at open, kept alive
 * by a TTL refreshed every ttl/3, deleted at close. So a writer whose XADD
 * returns null knows the reader is gone, and a crashed reader's inbox expires
 * by itself. Consumed entries are trimmed after every batch (XTRIM MINID):
 * the stream only ever holds what is unread, which flow control bounds.
 */
export class Inbox {
  readonly key: string;
  readonly #o: InboxOptions;
  readonly #ttlMs: number;
  readonly #reader: Redis;
  #lastId = '0-0';
  #closed = false;
  #timer?: NodeJS.Timeout;
  #loop?: Promise<void>;

  private constructor(options: InboxOptions) {
    this.#o = options;
    this.key = options.key;
    this.#ttlMs = options.ttlMs ?? 30_000;
    this.#reader = options.redis.duplicate({ maxRetriesPerRequest: null });
    this.#reader.on('error', (err: Error) => options.logger.debug({ err: err.message, inbox: this.key }, 'inbox connection error'));
  }

  static async open(options: InboxOptions): Promise<Inbox> {
    const inbox = new Inbox(options);
    await inbox.#create(options.fromStart === true);
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
    while (!this.#closed) {
      let res: Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;
      try {
        res = (await this.#reader.xreadBuffer('COUNT', 512, 'BLOCK', 2000, 'STREAMS', this.key, this.#lastId)) as typeof res;
      } catch (err) {
        if (this.#closed) return;
        this.#o.logger.warn({ err: (err as Error).message, inbox: this.key }, 'inbox read failed; retrying');
        await sleep(200);
        continue;
      }
      if (!res || this.#closed) continue;
      const batch: RelayEntry[] = [];
      for (const [, entries] of res) {
        for (const [idBuf, fields] of entries) {
          const id = idBuf.toString('latin1');
          this.#lastId = id;
          const e = decodeEntry(id, fields);
          if (e) batch.push(e);
        }
      }
      // Everything up to the last entry read is consumed: keep only what is unread.
      void this.#o.redis.xtrim(this.key, 'MINID', this.#lastId).catch(() => undefined);
      if (batch.length > 0) {
        try {
          this.#o.onEntries(batch);
        } catch (err) {
          this.#o.logger.error({ err, inbox: this.key }, 'inbox handler threw');
        }
      }
    }
  }

  /** Stops reading and deletes the key (writers' XADDs are refused from now on). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#reader.disconnect();
    await this.#loop?.catch(() => undefined);
    await this.#o.redis.del(this.key).catch(() => undefined);
  }
}
