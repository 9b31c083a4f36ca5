import type { Redis, RedisOptions } from 'ioredis';
import { Keys } from './keys.js';
import { parseStateEvent, type StateEvent } from './service-record.js';

/**
 * Tailing a Redis stream: the one loop of blocking XREADs that the event feed
 * (Orchestrator.events()), `logs --follow` (Orchestrator.logs()) and the API's sandbox
 * wake-ups (SandboxChanges) read through.
 *
 * - Each tail reads on a connection of its own (a duplicate of the caller's): a blocking read
 *   holds its connection for as long as it blocks.
 * - An abort ends it at once: the abort disconnects that connection, which fails the pending
 *   XREAD, rather than waiting out the BLOCK timeout. The connection is closed whenever the
 *   tail ends (abort, `return()` from a `break`, or an error thrown out of it).
 * - "From now on" is an id read before the first XREAD (lastStreamId), never XREAD's `$`: `$`
 *   means "after whatever is last when this XREAD arrives", so an entry written between the
 *   caller's call and that XREAD (the duplicate still connecting) would be skipped.
 * - A failed read is reported (`onError`) and retried after a pause from the last id yielded,
 *   so nothing still in the stream is skipped or repeated.
 */

/** One entry of a stream: its id and its field list (`[name, value, name, value, …]`). */
export interface StreamEntry {
  id: string;
  fields: string[];
}

export interface TailOptions {
  /** Ends the tail at once, also in the middle of a blocking read. */
  signal?: AbortSignal;
  /** Entries one XREAD returns at most (default 500). */
  count?: number;
  /**
   * How long one XREAD blocks (ms, default 1000). Only how often an idle tail asks again: an
   * abort does not wait for it.
   */
  blockMs?: number;
  /** Pause after a failed read before the next one (ms, default 500). */
  retryMs?: number;
  /** Told of each failed read, before the tail retries it. */
  onError?: (err: unknown) => void;
  /** Options of the tail's own connection, over those of the connection it duplicates. */
  connection?: Partial<RedisOptions>;
}

type XReadReply = Array<[string, Array<[string, string[]]>]> | null;

/**
 * The id of the last entry of stream `key` ('0' when it is empty or missing): tail from it to
 * read everything written after this call. The read is sent on `redis` before this returns,
 * so it is ordered before whatever the caller sends on that connection next (a tail started
 * before reading a record sees every change after that read).
 */
export async function lastStreamId(redis: Redis, key: string): Promise<string> {
  const last = await redis.xrevrange(key, '+', '-', 'COUNT', 1);
  return last[0]?.[0] ?? '0';
}

/**
 * The entries of stream `key` after id `from` (exclusive), in order: first those already in
 * the stream, then each new one as it is written, until `options.signal` aborts or the caller
 * stops iterating. `from` may be a promise (lastStreamId's, not awaited, to start "now" at the
 * caller's call); when it rejects, so does the first `next()`.
 */
export async function* tailStream(
  redis: Redis,
  key: string,
  from: string | Promise<string>,
  options: TailOptions = {},
): AsyncGenerator<StreamEntry, void, undefined> {
  const { signal, count = 500, blockMs = 1000, retryMs = 500, onError } = options;
  let since = await from;
  if (signal?.aborted) return;
  const conn = redis.duplicate(options.connection);
  conn.on('error', () => undefined); // it reconnects; a failed read is reported below
  const stop = (): void => conn.disconnect();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    while (!signal?.aborted) {
      let res: XReadReply;
      try {
        res = (await conn.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', key, since)) as XReadReply;
      } catch (err) {
        if (signal?.aborted) return;
        onError?.(err);
        await pause(retryMs, signal);
        continue;
      }
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          if (signal?.aborted) return;
          since = id;
          yield { id, fields };
        }
      }
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    conn.disconnect();
  }
}

/** tailStream over the state's event stream (`{monocore}:events`), each entry parsed. */
export async function* tailEvents(
  redis: Redis,
  from: string | Promise<string>,
  options: TailOptions = {},
): AsyncGenerator<StateEvent, void, undefined> {
  for await (const { id, fields } of tailStream(redis, Keys.events(), from, options)) yield parseStateEvent(id, fields);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
