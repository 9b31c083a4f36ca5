import type { Redis } from 'ioredis';
import { bufferFor, releaseSlab } from '../streams/slabs.js';
import { localInbox } from './local-inboxes.js';
import { encodeEntry, type RelayEntry } from './relay-protocol.js';
import type { WireEntry } from './wire-entry.js';

export interface AppendOptions {
  /** `false`: always through Redis, even to an inbox read in this process (tests, comparisons). */
  inProcess?: false;
}

/**
 * Appends one entry to an inbox. When the inbox's reader lives in this process (local-inboxes.ts)
 * the entry is handed to it, delivered on a later turn of the event loop; else it is an
 * `XADD … NOMKSTREAM`. Either way it resolves with the entry's id, or null when the inbox does
 * not exist (its reader is gone), and entries appended one after the other arrive in that order
 * (the way is chosen and the entry handed over or sent within the call, before it returns).
 *
 * A handed-over entry shares nothing with the writer, as one read from Redis would not: its
 * bytes are copied (the writer may reuse its buffer as soon as this returns; large ones into a
 * slab, as the inbox's reader puts them), its JSON is made anew from its text.
 */
export async function appendEntry(
  redis: Redis,
  key: string,
  kind: string,
  call: string,
  extra: { data?: Uint8Array; json?: unknown } = {},
  options: AppendOptions = {},
): Promise<string | null> {
  const local = options.inProcess === false ? undefined : localInbox(redis, key);
  if (!local) return redis.xadd(key, 'NOMKSTREAM', '*', ...encodeEntry(kind, call, extra));
  const entry: RelayEntry = { id: '', kind, call };
  if (extra.data !== undefined) {
    const data = bufferFor(extra.data.byteLength);
    data.set(extra.data);
    entry.data = data;
  }
  if (extra.json !== undefined) entry.json = JSON.parse(JSON.stringify(extra.json)) as unknown;
  return local.accept(entry);
}

/**
 * Appends a data entry built in its wire form (wire-entry.ts), which the writer gives up: to a
 * reader in this process its bytes go as they are, without a copy (their slab is the reader's
 * from now on); through Redis the command is sent as it is, and its slab serves again once Redis
 * answered. Resolves like `appendEntry`.
 */
export async function appendWireEntry(redis: Redis, entry: WireEntry, options: AppendOptions = {}): Promise<string | null> {
  const local = options.inProcess === false ? undefined : localInbox(redis, entry.key);
  if (local) {
    const data = entry.take();
    const id = local.accept({ id: '', kind: entry.kind, call: entry.call, data });
    if (id === null) releaseSlab(data); // refused: nobody holds it
    return id;
  }
  const res = (await redis.sendCommand(entry.command())) as string | null;
  entry.recycle();
  return res;
}
