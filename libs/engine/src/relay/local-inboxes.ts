import type { Redis } from 'ioredis';
import type { RelayEntry } from './relay-protocol.js';

/**
 * An inbox whose reader lives in this process (inbox.ts): a writer here hands it entries
 * instead of sending them through Redis (append-entry.ts, docs/RELAY.md "In one process").
 */
export interface LocalInbox {
  /**
   * Takes one entry, whose data and JSON are the inbox's from now on, and delivers it on a later
   * turn of the event loop. Returns the entry's id, or null once the inbox is closed: what an
   * `XADD … NOMKSTREAM` to a deleted inbox answers.
   */
  accept(entry: RelayEntry): string | null;
}

/** Registered inboxes by `<Redis server and database> <key>`. */
const registry = new Map<string, LocalInbox[]>();

/**
 * Where a key lives: the same key on another Redis server or in another database is another
 * inbox (tests run stacks on several databases in one process).
 */
function scoped(redis: Redis, key: string): string {
  const o = redis.options;
  return `${o.path ? `unix:${o.path}` : `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`}/${o.db ?? 0} ${key}`;
}

/**
 * Makes an inbox reachable in process, until the returned function is called. An inbox
 * registers before its key exists in Redis and unregisters before the key is deleted, so a
 * writer in this process that could reach it through Redis always finds it here first.
 */
export function registerLocalInbox(redis: Redis, key: string, inbox: LocalInbox): () => void {
  const k = scoped(redis, key);
  const list = registry.get(k) ?? [];
  list.push(inbox);
  registry.set(k, list);
  return () => {
    const now = registry.get(k);
    const i = now?.indexOf(inbox) ?? -1;
    if (!now || i === -1) return;
    now.splice(i, 1);
    if (now.length === 0) registry.delete(k);
  };
}

/**
 * The inbox of this key read in this process, if there is exactly one. Two readers of one key
 * in one process (a worker started again before its predecessor closed) each read every entry
 * of the stream: writers then go through Redis, which gives them that.
 */
export function localInbox(redis: Redis, key: string): LocalInbox | undefined {
  const list = registry.get(scoped(redis, key));
  return list?.length === 1 ? list[0] : undefined;
}
