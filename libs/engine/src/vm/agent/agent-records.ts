/**
 * Control payloads of the agent protocol: NUL-terminated `key=value` records
 * (the encoding of the init spec, docs/VM.md), so any byte but NUL survives.
 * Keys may repeat (`arg=`, `env=`); unknown keys are ignored by both sides.
 */

export type RecordList = Array<[string, string]>;

/** Thrown when a value cannot be carried (NUL byte); the caller maps it to its error. */
export class RecordValueError extends Error {
  constructor(readonly key: string) {
    super(`${key} contains a NUL byte`);
  }
}

export function encodeRecords(records: RecordList): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of records) {
    if (v.includes('\0')) throw new RecordValueError(k);
    parts.push(Buffer.from(`${k}=${v}\0`, 'utf8'));
  }
  return Buffer.concat(parts);
}

/** Parsed records: every value per key, in order. */
export class Records {
  constructor(private readonly map: Map<string, string[]>) {}

  get(key: string): string | undefined {
    const all = this.map.get(key);
    return all ? all[all.length - 1] : undefined;
  }

  all(key: string): string[] {
    return this.map.get(key) ?? [];
  }

  /** A non-negative safe integer, or undefined when absent; throws on anything else. */
  int(key: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (!/^-?\d{1,16}$/.test(v)) throw new RecordsError(`${key}=${JSON.stringify(v.slice(0, 40))} is not an integer`);
    const n = Number(v);
    if (n < 0 || n > max) throw new RecordsError(`${key}=${n} is out of range`);
    return n;
  }

  /** A signed safe integer (e.g. a clock step), or undefined when absent. */
  signedInt(key: string): number | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (!/^-?\d{1,16}$/.test(v)) throw new RecordsError(`${key}=${JSON.stringify(v.slice(0, 40))} is not an integer`);
    return Number(v);
  }

  /** Like int(), but the record must be there. */
  requireInt(key: string, max?: number): number {
    const n = this.int(key, max);
    if (n === undefined) throw new RecordsError(`record ${key}= is missing`);
    return n;
  }
}

export class RecordsError extends Error {}

/**
 * Parses a guest's records strictly: the payload must end with NUL, every
 * record must have a lowercase key and '='. Values are decoded as UTF-8
 * (invalid sequences become U+FFFD: they are shown, never interpreted).
 */
export function parseRecords(payload: Buffer, maxRecords = 10_000): Records {
  const map = new Map<string, string[]>();
  if (payload.length === 0) return new Records(map);
  if (payload[payload.length - 1] !== 0) throw new RecordsError('records do not end with NUL');
  let start = 0;
  let count = 0;
  while (start < payload.length) {
    const end = payload.indexOf(0, start);
    const rec = payload.subarray(start, end);
    start = end + 1;
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new RecordsError(`record ${count} has no key=`);
    const key = rec.subarray(0, eq).toString('latin1');
    if (!/^[a-z_]{1,32}$/.test(key)) throw new RecordsError(`record ${count} has a bad key`);
    if (++count > maxRecords) throw new RecordsError(`more than ${maxRecords} records`);
    const list = map.get(key);
    const value = rec.subarray(eq + 1).toString('utf8');
    if (list) list.push(value);
    else map.set(key, [value]);
  }
  return new Records(map);
}
