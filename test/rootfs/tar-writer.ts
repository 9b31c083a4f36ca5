// A minimal tar writer for tests: we craft hostile archives byte by byte, so the
// attacker side must not depend on the code under test (nor sanitise names).
import { gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';

export type TarType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'pax' | 'gnu-longname' | 'gnu-longlink' | 'raw';

export interface TarEntry {
  name: string;
  type?: TarType;
  /** ustar typeflag override (for 'raw'). */
  typeflag?: string;
  data?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** PAX records emitted in an 'x' header before this entry (values may be binary). */
  pax?: Record<string, string | Buffer>;
}

const TYPEFLAG: Record<Exclude<TarType, 'raw'>, string> = {
  file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6',
  pax: 'x', 'gnu-longname': 'L', 'gnu-longlink': 'K',
};

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** One 512-byte ustar header (names longer than 100 bytes are truncated: use pax or gnu-longname). */
export function tarHeader(e: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(512, 0);
  const type = e.type ?? 'file';
  h.write(e.name.slice(0, 100), 0, 'utf8');
  h.write(octal(e.mode ?? (type === 'dir' ? 0o755 : 0o644), 8), 100, 'ascii');
  h.write(octal(e.uid ?? 0, 8), 108, 'ascii');
  h.write(octal(e.gid ?? 0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(e.mtime ?? 1_600_000_000, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(type === 'raw' ? (e.typeflag ?? '0') : TYPEFLAG[type], 156, 'ascii');
  if (e.linkname) h.write(e.linkname.slice(0, 100), 157, 'utf8');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  h.write(octal(e.devmajor ?? 0, 8), 329, 'ascii');
  h.write(octal(e.devminor ?? 0, 8), 337, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

function pad(data: Buffer): Buffer {
  const rem = data.length % 512;
  return rem === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rem)]);
}

function paxBody(rec: Record<string, string | Buffer>): Buffer {
  const out: Buffer[] = [];
  for (const [k, v] of Object.entries(rec)) {
    const body = Buffer.concat([Buffer.from(` ${k}=`), Buffer.isBuffer(v) ? v : Buffer.from(v), Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    out.push(Buffer.from(String(len)), body);
  }
  return Buffer.concat(out);
}

export function tarEntry(e: TarEntry): Buffer {
  const parts: Buffer[] = [];
  if (e.pax) {
    const body = paxBody(e.pax);
    parts.push(tarHeader({ name: 'PaxHeader', type: 'pax' }, body.length), pad(body));
  }
  const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
  parts.push(tarHeader(e, data.length), pad(data));
  return Buffer.concat(parts);
}

/** A GNU long name ('L') entry followed by the real entry. */
export function gnuLongName(e: TarEntry): Buffer {
  const name = Buffer.from(e.name + '\0');
  return Buffer.concat([
    tarHeader({ name: '././@LongLink', type: 'gnu-longname' }, name.length), pad(name),
    tarEntry({ ...e, name: e.name.slice(0, 99) }),
  ]);
}

export function tarArchive(entries: (TarEntry | Buffer)[]): Buffer {
  return Buffer.concat([...entries.map((e) => (Buffer.isBuffer(e) ? e : tarEntry(e))), Buffer.alloc(1024)]);
}

export function gzip(b: Buffer): Buffer {
  return gzipSync(b);
}

export function zstd(b: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: b, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr.toString()}`);
  return r.stdout;
}
