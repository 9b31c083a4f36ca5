import * as fsc from 'node:fs';
import { MonocoreError } from '../errors/index.js';
import { TurnBudget } from './turn-budget.js';

/**
 * Writes an uncompressed erofs image while a rootfs is unpacked, so the block image
 * needs no second pass over the unpacked tree (mkfs.erofs re-read 200 MB and 14,000
 * files after the unpack: 1.5-2.4 s of a 6-7 s cold pull; bench/RESULTS.md, issue 11).
 *
 * File bodies are appended to the image's data area as the unpacker writes them to the
 * tree (`fileData`, `bigFile`), keyed by the file's path inside the root. At the end
 * (`finish`) the finished tree is walked once (readdir + lstat: names, owners, modes,
 * mtimes, link counts as the unpack left them, whiteouts and opaque dirs applied) and
 * the metadata goes after the data: directory blocks, then the inodes, then the
 * superblock. A path whose body was not recorded, or whose size differs from the
 * recorded one, is copied from the tree (`copiedFiles` counts them; the unpacker's tests
 * expect 0). The walk and the loops over its nodes are synchronous (readdirSync, lstatSync:
 * 14,000 entries for a 200 MB image) and let the event loop turn every TURN_BUDGET_MS
 * (turn-budget.ts), as the unpack does: the worker renews its leases on that loop.
 *
 * On-disk format (Linux fs/erofs/erofs_fs.h; what mkfs.erofs 1.5 writes uncompressed):
 * 4 KiB blocks, the superblock at byte 1024 of block 0, extended (64-byte) inodes with
 * their xattrs inline after them, regular files and directories as FLAT_PLAIN
 * (contiguous blocks from raw_blkaddr), symlinks as FLAT_INLINE (the target right after
 * the inode, never across a block). No shared xattrs, no compression, no feature bits,
 * so any kernel with erofs (5.4+) mounts it. The root inode is the first (nid 0: the
 * superblock's root_nid is 16 bits).
 */
const BLK = 4096;
const BLKBITS = 12;
const SUPER_OFFSET = 1024;
const EROFS_MAGIC = 0xe0f5e1e2;
const INODE_SIZE = 64;
const SLOT = 32;
const LAYOUT_FLAT_PLAIN = 0;
const LAYOUT_FLAT_INLINE = 2;
const FT_REG = 1;
const FT_DIR = 2;
const FT_SYMLINK = 7;
const DIRENT = 12;
/**
 * Small bodies are queued (the unpacker's own buffers, not copied: copying them cost the
 * main thread ~0.3 s per 200 MB image) and written with one writev in the thread pool
 * once this many bytes or buffers are queued.
 */
const BUF_SIZE = 4 << 20;
const MAX_IOV = 512;
/** Zeros that pad a body to its last block. */
const ZEROS = Buffer.alloc(BLK);
/** erofs xattr name indexes (EROFS_XATTR_INDEX_*) for the prefixes the unpacker sets. */
const XATTR_PREFIXES: [string, number][] = [['user.', 1], ['trusted.', 4], ['security.', 6]];

/** What the unpacker told us about a file or symlink it made (one object per inode: hardlinks share it). */
interface Inode {
  kind: 'reg' | 'lnk';
  blk: number;
  size: number;
  /** Permission bits (with setuid/setgid/sticky). */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  target?: Buffer;
  xattrs?: Map<string, Buffer>;
}

/** Owner, permission bits and mtime the unpacker gave an entry. */
export interface EntryMeta {
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}

interface Node {
  key: string;
  abs: string;
  kind: 'dir' | 'reg' | 'lnk';
  /** S_IFMT | permission bits. */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** Exact mtime when known (directories). */
  mtimeNs: bigint | undefined;
  nid: number;
  ino: number;
  xattr: Buffer | undefined;
  /** What the unpacker reported (files and symlinks), if it did. */
  inode: Inode | undefined;
  /** Regular files and directories: first data block. */
  blk: number;
  size: number;
  /** Symlink target (inline after the inode). */
  target: Buffer | undefined;
  /** Directories: entries sorted by name bytes, "." and ".." included; packed per block. */
  blocks: { name: Buffer; node: Node }[][] | undefined;
  parent: Node | undefined;
  subdirs: number;
  nlink: number;
}

export interface ErofsFinishOptions {
  /** Every inode owned by root (a tree unpacked by a non-root user: mkfs.erofs --all-root). */
  allRoot?: boolean;
}

export interface ErofsStats {
  inodes: number;
  blocks: number;
  /** Regular files whose data was read back from the tree (not recorded while unpacking). */
  copiedFiles: number;
}

function writeAllAt(fd: number, buf: Buffer, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number): void => {
      if (off >= buf.length) return resolve();
      fsc.write(fd, buf, off, buf.length - off, pos + off, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(new Error('write returned 0 bytes'));
        step(off + n);
      });
    };
    step(0);
  });
}

function writevAllAt(fd: number, bufs: Buffer[], pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (rest: Buffer[], at: number): void => {
      if (rest.length === 0) return resolve();
      fsc.writev(fd, rest, at, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(new Error('write returned 0 bytes'));
        let left = n;
        const next: Buffer[] = [];
        for (const b of rest) {
          if (left >= b.length) left -= b.length;
          else {
            next.push(left > 0 ? b.subarray(left) : b);
            left = 0;
          }
        }
        step(next, at + n);
      });
    };
    step(bufs, pos);
  });
}

function writeAllAtSync(fd: number, buf: Buffer, pos: number): void {
  let off = 0;
  while (off < buf.length) {
    const n = fsc.writeSync(fd, buf, off, buf.length - off, pos + off);
    if (n === 0) throw new Error('write returned 0 bytes');
    off += n;
  }
}

/** Little-endian u64 of a safe integer. */
function writeU64(b: Buffer, v: number, off: number): void {
  b.writeUInt32LE(v % 0x1_0000_0000, off);
  b.writeUInt32LE(Math.floor(v / 0x1_0000_0000), off + 4);
}

/** Milliseconds since the epoch (possibly fractional) as [seconds, nanoseconds]. */
function splitMs(ms: number): [number, number] {
  const sec = Math.floor(ms / 1000);
  return [sec, Math.min(999_999_999, Math.max(0, Math.round((ms - sec * 1000) * 1e6)))];
}

const pick = (m: EntryMeta): EntryMeta => ({ mode: m.mode, uid: m.uid, gid: m.gid, mtimeMs: m.mtimeMs });

const blocksOf = (size: number): number => Math.ceil(size / BLK);

export class ErofsWriter {
  private readonly fd: number;
  /** Next free block of the data area (block 0 holds the superblock). */
  private nextBlk = 1;
  private iov: Buffer[] = [];
  /** Bytes (whole blocks) queued in `iov`. */
  private bufLen = 0;
  private readonly pending = new Set<Promise<void>>();
  private failure: unknown;
  private closed = false;
  /** Files and symlinks by path inside the root. */
  private readonly inodes = new Map<string, Inode>();
  /** Directories' xattrs by path. */
  private readonly dirXattrs = new Map<string, Map<string, Buffer>>();

  constructor(readonly path: string) {
    this.fd = fsc.openSync(path, fsc.constants.O_RDWR | fsc.constants.O_CREAT | fsc.constants.O_EXCL | fsc.constants.O_NOFOLLOW, 0o644);
  }

  private track(p: Promise<void>): void {
    const t = p.catch((err: unknown) => {
      this.failure ??= err;
    }).finally(() => this.pending.delete(t));
    this.pending.add(t);
  }

  private check(): void {
    if (this.failure) throw this.failure as Error;
  }

  /** Writes out the small-body buffer (in the background). */
  private flush(): void {
    if (this.bufLen === 0) return;
    const start = this.nextBlk - this.bufLen / BLK;
    this.track(writevAllAt(this.fd, this.iov, start * BLK));
    this.iov = [];
    this.bufLen = 0;
  }

  /** A regular file was created at `key` with this body (all of it, in memory). */
  fileData(key: string, chunks: Buffer[], size: number, meta: EntryMeta): void {
    this.check();
    const n = blocksOf(size);
    if (n === 0) {
      this.inodes.set(key, { ...pick(meta), kind: 'reg', blk: 0, size: 0 });
      return;
    }
    if (n * BLK > BUF_SIZE) {
      const w = this.bigFile(key, size, meta);
      let pos = 0;
      for (const c of chunks) {
        this.track(w(c, pos));
        pos += c.length;
      }
      return;
    }
    if (this.bufLen + n * BLK > BUF_SIZE || this.iov.length + chunks.length + 1 > MAX_IOV) this.flush();
    for (const c of chunks) if (c.length > 0) this.iov.push(c);
    if (size % BLK !== 0) this.iov.push(ZEROS.subarray(0, BLK - (size % BLK)));
    this.inodes.set(key, { ...pick(meta), kind: 'reg', blk: this.nextBlk, size });
    this.bufLen += n * BLK;
    this.nextBlk += n;
  }

  /**
   * A regular file was created at `key` whose body streams in: reserves its blocks and
   * returns a function writing a chunk at a byte offset of the body.
   */
  bigFile(key: string, size: number, meta: EntryMeta): (chunk: Buffer, offset: number) => Promise<void> {
    this.check();
    this.flush();
    const blk = this.nextBlk;
    this.nextBlk += blocksOf(size);
    this.inodes.set(key, { ...pick(meta), kind: 'reg', blk, size });
    return (chunk, offset) => writeAllAt(this.fd, chunk, blk * BLK + offset);
  }

  /** A symlink was created at `key`. */
  symlink(key: string, target: string, meta: Omit<EntryMeta, 'mode'>): void {
    const t = Buffer.from(target);
    this.inodes.set(key, { uid: meta.uid, gid: meta.gid, mtimeMs: meta.mtimeMs, mode: 0o777, kind: 'lnk', blk: 0, size: t.length, target: t });
  }

  /** A new directory at `key`: forgets the xattrs an earlier one there had. */
  created(key: string): void {
    this.dirXattrs.delete(key);
    this.inodes.delete(key);
  }

  /** A hardlink at `key` to the entry at `target`: the same inode. */
  link(key: string, target: string): void {
    const i = this.inodes.get(target);
    if (i) this.inodes.set(key, i);
    else this.inodes.delete(key);
  }

  /** An extended attribute the unpacker set on the entry at `key` (after creating it). */
  xattr(key: string, name: string, value: Buffer, isDir: boolean): void {
    let m: Map<string, Buffer> | undefined;
    if (isDir) {
      m = this.dirXattrs.get(key);
      if (!m) this.dirXattrs.set(key, (m = new Map()));
    } else {
      const i = this.inodes.get(key);
      if (!i) return;
      m = i.xattrs ??= new Map();
    }
    m.set(name, value);
  }

  /** Closes the file without finishing it (the caller deletes it). */
  async abandon(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.pending]);
    fsc.closeSync(this.fd);
  }

  /** Walks the unpacked tree at `root` and writes the metadata; closes the file. */
  async finish(root: string, opts: ErofsFinishOptions = {}): Promise<ErofsStats> {
    try {
      return await this.finishImpl(root, opts);
    } finally {
      await this.abandon();
    }
  }

  private async finishImpl(root: string, opts: ErofsFinishOptions): Promise<ErofsStats> {
    const T0 = performance.now();
    let TL = T0;
    const tmark = (what: string): void => {
      if (process.env.MONOCORE_EROFS_TIMING) process.stderr.write(`erofs ${what} ${(performance.now() - TL).toFixed(0)} ms\n`);
      TL = performance.now();
    };
    this.flush();
    await Promise.all([...this.pending]);
    tmark('pending');
    this.check();
    const budget = new TurnBudget();
    let copiedFiles = 0;
    const byIno = new Map<number, Node>();
    const byInode = new Map<Inode, Node>();
    const order: Node[] = [];
    const dirs: Node[] = [];
    // One object shape for every node (no optional spreads): 14,000 of them per 200 MB image.
    const mk = (key: string, abs: string, kind: Node['kind'], mode: number, m: { uid: number; gid: number; mtimeMs: number }, parent: Node | undefined): Node => {
      const n: Node = {
        key, abs, kind, mode, uid: m.uid, gid: m.gid, mtimeMs: m.mtimeMs, mtimeNs: undefined, nid: 0, ino: order.length + 1,
        xattr: undefined, inode: undefined, blk: 0, size: 0, target: undefined, blocks: undefined, parent, subdirs: 0, nlink: 1,
      };
      order.push(n);
      return n;
    };
    const S_IFREG = fsc.constants.S_IFREG;
    const S_IFLNK = fsc.constants.S_IFLNK;
    const rootSt = fsc.lstatSync(root);
    const rootNode = mk('', root, 'dir', rootSt.mode, rootSt, undefined);
    rootNode.mtimeNs = fsc.lstatSync(root, { bigint: true }).mtimeNs;
    rootNode.xattr = encodeXattrs('/', this.dirXattrs.get(''));
    rootNode.parent = rootNode;
    // Directories are read with their entries' types; only directories (their modes and
    // times were applied at the end of the unpack) and entries the unpacker did not
    // report are lstat'ed. Children of a directory get consecutive inodes.
    const walk = async (dir: Node): Promise<void> => {
      dirs.push(dir);
      const dirents = fsc.readdirSync(dir.abs, { withFileTypes: true });
      const entries: { name: Buffer; node: Node }[] = [];
      for (const de of dirents) {
        const turn = budget.turn();
        if (turn) await turn;
        const name = de.name;
        const key = dir.key === '' ? name : `${dir.key}/${name}`;
        const abs = `${dir.abs}/${name}`;
        let node: Node;
        const known = de.isFile() || de.isSymbolicLink() ? this.inodes.get(key) : undefined;
        if (known && (known.kind === 'reg') === de.isFile()) {
          const seen = byInode.get(known);
          if (seen) {
            seen.nlink++;
            entries.push({ name: Buffer.from(name), node: seen });
            continue;
          }
          node = mk(key, abs, known.kind, known.mode | (known.kind === 'reg' ? S_IFREG : S_IFLNK), known, dir);
          node.inode = known;
          byInode.set(known, node);
        } else {
          const st = fsc.lstatSync(abs);
          if (st.isDirectory()) {
            node = mk(key, abs, 'dir', st.mode, st, dir);
            // Exact: a directory's time is often "now" (made by the unpack), with nanoseconds.
            node.mtimeNs = fsc.lstatSync(abs, { bigint: true }).mtimeNs;
            node.xattr = encodeXattrs(key, this.dirXattrs.get(key));
            dir.subdirs++;
          } else if (st.isFile() || st.isSymbolicLink()) {
            const seen = st.nlink > 1 ? byIno.get(st.ino) : undefined;
            if (seen) {
              seen.nlink++;
              entries.push({ name: Buffer.from(name), node: seen });
              continue;
            }
            node = mk(key, abs, st.isFile() ? 'reg' : 'lnk', st.mode, st, dir);
            node.size = st.size;
            if (st.nlink > 1) byIno.set(st.ino, node);
          } else {
            throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `cannot put ${key} in the block image: not a file, directory or symlink`, { entry: key });
          }
        }
        entries.push({ name: Buffer.from(name), node });
      }
      dir.blocks = [[...entries, { name: Buffer.from('.'), node: dir }, { name: Buffer.from('..'), node: dir.parent as Node }].sort((a, b) => Buffer.compare(a.name, b.name))];
      for (const e of entries) if (e.node.kind === 'dir' && e.node.parent === dir && e.node.blocks === undefined) await walk(e.node);
    };
    await walk(rootNode);
    tmark('walk');

    // Data: file bodies (recorded, or copied now), then directory blocks.
    for (const n of order) {
      const turn = budget.turn();
      if (turn) await turn;
      const known = n.inode;
      if (known) {
        n.xattr = encodeXattrs(n.key, known.xattrs);
        n.size = known.size;
        n.blk = known.blk;
        if (known.target) n.target = known.target;
      } else if (n.kind === 'reg') {
        copiedFiles++;
        const data = fsc.readFileSync(n.abs);
        if (data.length !== n.size) throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `${n.key} changed while the block image was built`, { entry: n.key });
        this.fileData(n.key, [data], data.length, { mode: n.mode, uid: n.uid, gid: n.gid, mtimeMs: n.mtimeMs });
        n.blk = (this.inodes.get(n.key) as Inode).blk;
      } else if (n.kind === 'lnk') {
        n.target = fsc.readlinkSync(n.abs, { encoding: 'buffer' });
        n.size = n.target.length;
      }
    }
    tmark('data');
    for (const d of dirs) {
      const turn = budget.turn();
      if (turn) await turn;
      const all = (d.blocks as { name: Buffer; node: Node }[][])[0] as { name: Buffer; node: Node }[];
      const blocks: { name: Buffer; node: Node }[][] = [];
      let cur: { name: Buffer; node: Node }[] = [];
      let used = 0;
      for (const e of all) {
        if (e.name.length > 255) throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `${d.key}/${e.name.toString()}: name longer than 255 bytes`, { entry: d.key });
        if (used + DIRENT + e.name.length > BLK) {
          blocks.push(cur);
          cur = [];
          used = 0;
        }
        cur.push(e);
        used += DIRENT + e.name.length;
      }
      blocks.push(cur);
      d.blocks = blocks;
      d.size = (blocks.length - 1) * BLK + used;
      d.nlink = 2 + d.subdirs;
    }
    this.flush();
    for (const d of dirs) {
      d.blk = this.nextBlk;
      this.nextBlk += (d.blocks as unknown[]).length;
    }

    tmark('dirs');
    // Metadata: inodes after the data, the root first.
    const metaBlk = this.nextBlk;
    let cursor = 0;
    for (const n of order) {
      const turn = budget.turn();
      if (turn) await turn;
      const inline = n.kind === 'lnk' ? (n.target as Buffer).length : 0;
      const total = INODE_SIZE + (n.xattr?.length ?? 0) + inline;
      // An inode with its xattrs and inline data stays within one block (strictly below its
      // end: the kernel's fast-symlink check); a larger one (huge xattrs) may cross.
      if (total < BLK && (cursor % BLK) + total >= BLK) cursor = Math.ceil(cursor / BLK) * BLK;
      if (n.kind === 'lnk' && (cursor % BLK) + total >= BLK) {
        throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `${n.key}: symlink target and xattrs too large for the block image`, { entry: n.key });
      }
      n.nid = cursor / SLOT;
      cursor = Math.ceil((cursor + total) / SLOT) * SLOT;
    }
    if (rootNode.nid !== 0) throw new Error('erofs: the root inode must come first');
    const meta = Buffer.alloc(Math.ceil(cursor / BLK) * BLK);
    for (const n of order) {
      const turn = budget.turn();
      if (turn) await turn;
      const off = n.nid * SLOT;
      const layout = n.kind === 'lnk' ? LAYOUT_FLAT_INLINE : LAYOUT_FLAT_PLAIN;
      meta.writeUInt16LE(1 | (layout << 1), off);
      const xlen = n.xattr?.length ?? 0;
      meta.writeUInt16LE(xlen === 0 ? 0 : (xlen - 12) / 4 + 1, off + 2);
      meta.writeUInt16LE(n.mode & 0xffff, off + 4);
      writeU64(meta, n.size, off + 8);
      meta.writeUInt32LE(n.kind === 'lnk' ? 0 : n.blk, off + 16);
      meta.writeUInt32LE(n.ino, off + 20);
      meta.writeUInt32LE(opts.allRoot ? 0 : n.uid, off + 24);
      meta.writeUInt32LE(opts.allRoot ? 0 : n.gid, off + 28);
      const [sec, nsec] = n.mtimeNs !== undefined ? [Number(n.mtimeNs / 1_000_000_000n), Number(n.mtimeNs % 1_000_000_000n)] : splitMs(n.mtimeMs);
      writeU64(meta, Math.max(0, sec), off + 32);
      meta.writeUInt32LE(nsec, off + 40);
      meta.writeUInt32LE(n.nlink, off + 44);
      if (n.xattr) n.xattr.copy(meta, off + INODE_SIZE);
      if (n.target) n.target.copy(meta, off + INODE_SIZE + xlen);
    }

    tmark('inodes');
    // Directory blocks, now that every nid is known.
    const dirData = Buffer.alloc(dirs.reduce((a, d) => a + (d.blocks as unknown[]).length, 0) * BLK);
    const dirStart = (dirs[0] as Node).blk;
    for (const d of dirs) {
      const turn = budget.turn();
      if (turn) await turn;
      (d.blocks as { name: Buffer; node: Node }[][]).forEach((entries, i) => {
        const base = (d.blk - dirStart + i) * BLK;
        let nameoff = entries.length * DIRENT;
        entries.forEach((e, j) => {
          const o = base + j * DIRENT;
          writeU64(dirData, e.node.nid, o);
          dirData.writeUInt16LE(nameoff, o + 8);
          dirData.writeUInt8(e.node.kind === 'dir' ? FT_DIR : e.node.kind === 'reg' ? FT_REG : FT_SYMLINK, o + 10);
          e.name.copy(dirData, base + nameoff);
          nameoff += e.name.length;
        });
      });
    }

    tmark('dirblocks');
    const totalBlocks = metaBlk + meta.length / BLK;
    const sb = Buffer.alloc(128);
    sb.writeUInt32LE(EROFS_MAGIC, 0);
    sb.writeUInt8(BLKBITS, 12);
    sb.writeUInt16LE(rootNode.nid, 14);
    sb.writeBigUInt64LE(BigInt(order.length), 16);
    const now = Date.now();
    sb.writeBigUInt64LE(BigInt(Math.floor(now / 1000)), 24);
    sb.writeUInt32LE(totalBlocks, 36);
    sb.writeUInt32LE(metaBlk, 40);
    await Promise.all([writeAllAt(this.fd, dirData, dirStart * BLK), writeAllAt(this.fd, meta, metaBlk * BLK), ...this.pending]);
    this.check();
    writeAllAtSync(this.fd, sb, SUPER_OFFSET);
    fsc.ftruncateSync(this.fd, totalBlocks * BLK);
    tmark('write');
    return { inodes: order.length, blocks: totalBlocks, copiedFiles };
  }
}

/** The inline xattr body (erofs_xattr_ibody_header + entries, 4-byte aligned), or undefined. */
function encodeXattrs(key: string, xs: Map<string, Buffer> | undefined): Buffer | undefined {
  if (!xs || xs.size === 0) return undefined;
  const parts: Buffer[] = [Buffer.alloc(12)];
  for (const [name, value] of xs) {
    const p = XATTR_PREFIXES.find(([pre]) => name.startsWith(pre));
    if (!p) throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `${key}: extended attribute ${name} cannot go in the block image`, { entry: key });
    const suffix = Buffer.from(name.slice(p[0].length));
    if (suffix.length > 255 || value.length > 0xffff) throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `${key}: extended attribute ${name} too large for the block image`, { entry: key });
    const len = 4 + suffix.length + value.length;
    const e = Buffer.alloc(Math.ceil(len / 4) * 4);
    e.writeUInt8(suffix.length, 0);
    e.writeUInt8(p[1], 1);
    e.writeUInt16LE(value.length, 2);
    suffix.copy(e, 4);
    value.copy(e, 4 + suffix.length);
    parts.push(e);
  }
  const out = Buffer.concat(parts);
  if ((out.length - 12) / 4 + 1 > 0xffff) throw new MonocoreError('MC_ROOTFS_BLOCK_BUILD_FAILED', `${key}: extended attributes too large for the block image`, { entry: key });
  return out;
}
