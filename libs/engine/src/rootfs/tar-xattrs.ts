/**
 * Reads extended attributes out of a tar stream, beside node-tar's parser.
 *
 * Why a second reader: node-tar decodes PAX records as UTF-8 text and cuts each
 * value at its first NUL, so binary values — `security.capability` above all,
 * how images give `ping` its CAP_NET_RAW without setuid — cannot survive it.
 * This scanner walks the same bytes block by block, keeps each PAX header's raw
 * records, and queues the xattrs of every real entry in archive order; the
 * applier takes one item per entry the parser emits.
 *
 * Encodings: `SCHILY.xattr.NAME=VALUE` (GNU tar, bsdtar, Docker/BuildKit) with the
 * raw value, and `LIBARCHIVE.xattr.URLENCODED-NAME=BASE64-VALUE`.
 */
export type Xattrs = Map<string, Buffer>;

const BLOCK = 512;
/** Headers that describe the next entry (or none) rather than being one. */
const META_TYPES = new Set(['x', 'g', 'L', 'K', 'N']);
/** A PAX header larger than this is not kept (node-tar refuses them above 1 MiB as well). */
const MAX_PAX = 1 << 20;

export class TarXattrScanner {
  private header = Buffer.alloc(0);
  /** Body bytes still to pass over (including padding). */
  private skip = 0;
  /** Collecting a PAX 'x' body: the parts so far and its exact size. */
  private pax: { parts: Buffer[]; size: number; got: number } | undefined;
  private pending: Xattrs | undefined;
  private readonly queue: (Xattrs | undefined)[] = [];
  private head = 0;

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        if (this.pax) this.collect(chunk.subarray(off, off + n));
        this.skip -= n;
        off += n;
        if (this.skip === 0 && this.pax) this.finishPax();
        continue;
      }
      const need = BLOCK - this.header.length;
      const take = chunk.subarray(off, off + need);
      this.header = this.header.length === 0 ? Buffer.from(take) : Buffer.concat([this.header, take]);
      off += take.length;
      if (this.header.length === BLOCK) {
        const h = this.header;
        this.header = Buffer.alloc(0);
        this.onHeader(h);
      }
    }
  }

  /** The xattrs of the next entry in archive order (undefined: none). */
  shift(): Xattrs | undefined {
    if (this.head >= this.queue.length) return undefined;
    const x = this.queue[this.head];
    this.queue[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return x;
  }

  private onHeader(h: Buffer): void {
    if (h.every((b) => b === 0)) return; // end-of-archive blocks
    const size = headerSize(h);
    const type = String.fromCharCode(h[156] ?? 0);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      this.pax = size <= MAX_PAX ? { parts: [], size, got: 0 } : undefined;
      this.skip = padded;
      if (padded === 0 && this.pax) this.finishPax();
      return;
    }
    this.skip = padded;
    if (META_TYPES.has(type)) return;
    this.queue.push(this.pending);
    this.pending = undefined;
  }

  private collect(part: Buffer): void {
    const pax = this.pax!;
    const want = Math.min(part.length, pax.size - pax.got);
    if (want > 0) {
      pax.parts.push(Buffer.from(part.subarray(0, want)));
      pax.got += want;
    }
  }

  private finishPax(): void {
    const body = Buffer.concat(this.pax!.parts);
    this.pax = undefined;
    const found = parsePaxXattrs(body);
    if (found.size > 0) this.pending = found;
  }
}

/** The size field: octal text, or GNU base-256 when the top bit of the first byte is set. */
function headerSize(h: Buffer): number {
  const f = h.subarray(124, 136);
  if ((f[0] ?? 0) & 0x80) {
    let n = 0;
    for (let i = 1; i < f.length; i++) n = n * 256 + (f[i] ?? 0);
    return n;
  }
  const text = f.toString('latin1').replace(/[\0 ]+$/, '').trim();
  return text === '' ? 0 : parseInt(text, 8) || 0;
}

/** PAX records are "<len> <key>=<value>\n", where len counts the whole record. Values may be binary. */
export function parsePaxXattrs(body: Buffer): Xattrs {
  const out: Xattrs = new Map();
  let off = 0;
  while (off < body.length) {
    const sp = body.indexOf(0x20, off);
    if (sp < 0) break;
    const len = Number(body.subarray(off, sp).toString('latin1'));
    if (!Number.isInteger(len) || len <= 0 || off + len > body.length) break;
    const rec = body.subarray(sp + 1, off + len - 1); // without the trailing '\n'
    const eq = rec.indexOf(0x3d);
    if (eq > 0) {
      const key = rec.subarray(0, eq).toString('utf8');
      const value = rec.subarray(eq + 1);
      if (key.startsWith('SCHILY.xattr.')) {
        out.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value));
      } else if (key.startsWith('LIBARCHIVE.xattr.')) {
        try {
          out.set(decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(value.toString('latin1'), 'base64'));
        } catch {
          // a name that does not decode: not an attribute we could set anyway
        }
      }
    }
    off += len;
  }
  return out;
}
