import { z } from 'zod';
import { MonocoreError } from '../errors/index.js';

/**
 * The relay carries exec and file calls from an API process to the worker host
 * that runs the target VM, and their data both ways, through Redis only (no
 * inbound port on workers). docs/RELAY.md has the design; in short:
 *
 * - every reader owns one **inbox**, a Redis stream it reads with one blocking
 *   XREAD: each worker host (`inbox:host:<id>`) and each API process
 *   (`inbox:api:<random>`). Writers append with `XADD … NOMKSTREAM`, so a
 *   reader that is gone (its inbox expired) is noticed at once instead of
 *   filling a key nobody reads;
 * - a call is one `call` entry in the worker's inbox naming the API's inbox
 *   for the answers; everything else of the call (stdin or upload bytes,
 *   credit, signals, output, the result) is an entry tagged with the call id;
 * - flow control is end to end and in bytes: each direction may have at most
 *   WINDOW bytes sent and not yet consumed by the other side, which reports
 *   what it consumed with cumulative `credit` entries. So a guest printing
 *   100 MB, or a client uploading 1 GiB, holds at most a window in Redis, in
 *   the worker and in the API per call, and the producer (the guest process,
 *   the HTTP client) is slowed down to the consumer's pace.
 *
 * Entries are flat field lists: `k` (kind), `c` (call id), optional `d` (raw
 * bytes) and `j` (JSON). Both sides parse what they read with the schemas below
 * and drop (and log) what does not parse: an inbox is written by other
 * monocore processes, but a bug in one must not crash the other.
 */

/**
 * Bytes a sender may have outstanding (sent, not yet credited) per call and direction: enough
 * to keep a few entries in flight for bulk transfers (4 MiB carried 64 MiB files at ~10× the
 * speed of 1 MiB; bench/RESULTS.md "sandboxes"), small enough to hold per call everywhere.
 */
export const RELAY_WINDOW_BYTES = 4 << 20;
/** A receiver reports what it consumed once it consumed this much since its last report (or the call is idle). */
export const RELAY_CREDIT_EVERY_BYTES = RELAY_WINDOW_BYTES / 4;
/** Data entries carry at most this much (chunks from the guest are merged up to it). */
export const RELAY_MAX_CHUNK_BYTES = 1 << 20;

/** What a call acts on: a sandbox's VM or a service's VM, on the host that runs it. */
export const RelayTargetSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('sandbox'), id: z.string().regex(/^sb-[a-z0-9]{12}$/) }),
  z.strictObject({ kind: z.literal('service'), name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/) }),
]);
export type RelayTarget = z.infer<typeof RelayTargetSchema>;

export const describeTarget = (t: RelayTarget): string => (t.kind === 'sandbox' ? `sandbox ${t.id}` : `service "${t.name}"`);

const argv = z.array(z.string()).min(1).max(4096);
const env = z.record(z.string(), z.string());

/** The operations and their arguments (validated again by the worker). */
export const RelayOpSchema = z.discriminatedUnion('op', [
  z.strictObject({
    op: z.literal('exec'),
    argv,
    env: env.optional(),
    cwd: z.string().optional(),
    user: z.string().optional(),
    /** Give the process a stdin pipe fed by `data`/`eof` entries (else /dev/null). */
    stdin: z.boolean(),
    tty: z.strictObject({ cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) }).optional(),
    timeoutMs: z.number().int().positive().optional(),
  }),
  z.strictObject({ op: z.literal('read'), path: z.string() }),
  z.strictObject({
    op: z.literal('write'),
    path: z.string(),
    mode: z.number().int().min(0).max(0o7777).optional(),
    owner: z.string().optional(),
    maxBytes: z.number().int().positive(),
  }),
  z.strictObject({ op: z.literal('tar-out'), path: z.string() }),
  z.strictObject({ op: z.literal('tar-in'), path: z.string(), maxBytes: z.number().int().positive() }),
  /** Not an agent call: the worker kills the sandbox's VM, deletes its disk and records it deleted. */
  z.strictObject({ op: z.literal('delete') }),
  /** Not agent calls either: the worker saves the sandbox's VM to its disk and ends QEMU, or restores it (docs/SNAPSHOTS.md). */
  z.strictObject({ op: z.literal('pause') }),
  z.strictObject({ op: z.literal('resume') }),
  /** Fork the sandbox into these new sandboxes (recorded `creating` on the same host by the API). */
  z.strictObject({ op: z.literal('fork'), children: z.array(z.string().regex(/^sb-[a-z0-9]{12}$/)).min(1).max(16) }),
]);
export type RelayOp = z.infer<typeof RelayOpSchema>;

/** The `j` of a `call` entry. */
export const CallMetaSchema = z.strictObject({
  target: RelayTargetSchema,
  op: RelayOpSchema,
  /** The API's inbox: where answers go. */
  reply: z.string().min(1).max(200),
  /** When the API sent it (ms since the epoch): a worker drops calls older than RELAY_STALE_CALL_MS. */
  sent: z.number(),
});
export type CallMeta = z.infer<typeof CallMetaSchema>;

/** A call a worker finds in its inbox this long after it was sent is answered with an error, not run. */
export const RELAY_STALE_CALL_MS = 60_000;

/** Kinds of entries the API writes into a worker's inbox. */
export const UpKind = {
  call: 'call',
  data: 'd',
  eof: 'eof',
  credit: 'cr',
  signal: 'sig',
  resize: 'rs',
  cancel: 'x',
} as const;

/** Kinds of entries a worker writes into an API's inbox. */
export const DownKind = {
  /** First answer of every call: the worker that runs it (incarnation) and op-specific facts. */
  open: 'open',
  stdout: 'o',
  stderr: 'e',
  credit: 'cr',
  /** The call succeeded: its result. Last entry of the call. */
  end: 'end',
  /** The call failed: `{code, message, details}`. Last entry of the call. */
  fail: 'fail',
} as const;

export const SignalMetaSchema = z.strictObject({
  signal: z.union([z.string().regex(/^SIG[A-Z0-9]+$/), z.number().int().min(1).max(64)]),
  target: z.enum(['process', 'group', 'tree']).default('process'),
});
export const ResizeMetaSchema = z.strictObject({ cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) });
export const CreditMetaSchema = z.strictObject({ bytes: z.number().int().nonnegative() });

export const OpenMetaSchema = z.object({
  /** `<pid>@<started_at>` of the worker process: the API notices a restart by it. */
  worker: z.string(),
  pid: z.number().int().optional(),
  file: z
    .object({ type: z.string(), size: z.number(), mode: z.number(), uid: z.number(), gid: z.number(), mtimeMs: z.number() })
    .optional(),
});
export type OpenMeta = z.infer<typeof OpenMetaSchema>;

export const ExitMetaSchema = z.object({
  exitCode: z.number().int(),
  signal: z.number().int().nullable(),
  timedOut: z.boolean(),
  durationMs: z.number(),
  spawnError: z.string().optional(),
});
export type ExitMeta = z.infer<typeof ExitMetaSchema>;

export const EndMetaSchema = z.object({
  exit: ExitMetaSchema.optional(),
  /** write/tar-in: bytes received. */
  size: z.number().optional(),
});
export type EndMeta = z.infer<typeof EndMetaSchema>;

export const FailMetaSchema = z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).default({}) });

/** One inbox entry, decoded. */
export interface RelayEntry {
  /** Stream id (`local-<n>` for an entry handed over in process: append-entry.ts). */
  id: string;
  kind: string;
  call: string;
  /**
   * Raw bytes. A large field is read into a slab (streams/slabs.ts): the entry's consumer may
   * give it back with `releaseSlab` once it is done with the bytes.
   */
  data?: Buffer;
  json?: unknown;
  /** A field of it could not be read (over the reader's size limit): its call fails. */
  damaged?: true;
}

/** Flat XADD field list of an entry. */
export function encodeEntry(kind: string, call: string, extra: { data?: Uint8Array; json?: unknown } = {}): Array<string | Buffer> {
  const out: Array<string | Buffer> = ['k', kind, 'c', call];
  if (extra.data !== undefined) out.push('d', Buffer.from(extra.data.buffer, extra.data.byteOffset, extra.data.byteLength));
  if (extra.json !== undefined) out.push('j', JSON.stringify(extra.json));
  return out;
}

/**
 * An XREAD entry's field list (values as read: Buffers, or whatever else the reader made of
 * them) → RelayEntry, or undefined when it is not a relay entry (the inbox's marker, garbage).
 */
export function decodeEntry(id: string, fields: ReadonlyArray<unknown>): RelayEntry | undefined {
  let kind: string | undefined;
  let call: string | undefined;
  let data: Buffer | undefined;
  let json: unknown;
  let damaged = false;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const v = fields[i + 1];
    if (!Buffer.isBuffer(name)) return undefined;
    const f = name.toString('latin1');
    if (!Buffer.isBuffer(v)) {
      damaged = true;
      continue;
    }
    if (f === 'k') kind = v.toString('latin1');
    else if (f === 'c') call = v.toString('latin1');
    else if (f === 'd') data = v;
    else if (f === 'j') {
      try {
        json = JSON.parse(v.toString('utf8'));
      } catch {
        return undefined;
      }
    }
  }
  if (kind === undefined || call === undefined) return undefined;
  const e: RelayEntry = { id, kind, call };
  if (data !== undefined) e.data = data;
  if (json !== undefined) e.json = json;
  if (damaged) e.damaged = true;
  return e;
}

/** A `fail` entry's meta → the MonocoreError it stands for (an unknown code becomes MC_INTERNAL). */
export function errorFromFail(meta: z.infer<typeof FailMetaSchema>, isCode: (c: string) => boolean): MonocoreError {
  if (isCode(meta.code)) return new MonocoreError(meta.code as never, meta.message, meta.details);
  return new MonocoreError('MC_INTERNAL', `${meta.code}: ${meta.message}`, meta.details);
}
