import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chown, open, rm, stat } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MonocoreError } from '../../errors/index.js';
import type { QmpClient } from './qmp-client.js';

/** What a saved VM state file must be: checked before and while it is restored. */
export interface VmStateDigest {
  sha256: string;
  bytes: number;
}

/**
 * QEMU 7.2 throttles a migration to 32 MiB/s unless told otherwise; a save to a local
 * file should go as fast as QEMU can write.
 */
const SAVE_BANDWIDTH = 64 * 1024 ** 3;

let saves = 0;

/**
 * Saves the state of a paused VM (`stop` first) into `dest`: QEMU's migration stream,
 * sent to a unix socket we listen on in the VM's runtime dir (QEMU runs under
 * `-sandbox spawn=deny`, so no `exec:` URI, and Node cannot pass it a file over QMP)
 * and hashed on its way to the file. Untouched guest RAM is sent as zero-page markers,
 * so the file grows with the RAM the guest used, not with its size.
 */
export async function saveVmState(qmp: QmpClient, o: { runtimeDir: string; uid?: number; dest: string; timeoutMs?: number }): Promise<VmStateDigest> {
  const path = join(o.runtimeDir, `save-${process.pid}-${++saves}.sock`);
  const server = createServer();
  const conn = new Promise<Socket>((resolve, reject) => {
    server.once('connection', resolve);
    server.once('error', reject);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  try {
    if (o.uid !== undefined) await chown(path, o.uid, o.uid);
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': SAVE_BANDWIDTH });
    await qmp.execute('migrate', { uri: `unix:${path}` });
    const timeoutMs = o.timeoutMs ?? 120_000;
    let timer: NodeJS.Timeout | undefined;
    const sock = await Promise.race([
      conn,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new MonocoreError('MC_VM_SNAPSHOT_FAILED', `QEMU did not connect to save its state within ${timeoutMs} ms`, {})), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    const hash = createHash('sha256');
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        bytes += chunk.length;
        cb(null, chunk);
      },
    });
    await pipeline(sock, tap, createWriteStream(o.dest, { mode: 0o600 }));
    await qmp.migrationDone();
    return { sha256: hash.digest('hex'), bytes };
  } catch (err) {
    await rm(o.dest, { force: true });
    throw err instanceof MonocoreError ? err : new MonocoreError('MC_VM_SNAPSHOT_FAILED', `saving the VM state to ${o.dest} failed: ${(err as Error).message}`, { path: o.dest }, { cause: err });
  } finally {
    server.close();
    await rm(path, { force: true });
  }
}

/**
 * Throws unless `path` has the size and sha256 it was saved with. A truncated file is
 * caught by its size at once; a corrupted one by the hash, which the caller computes
 * while QEMU loads the same file (the guest stays paused until both are done).
 */
export async function checkVmStateSize(path: string, want: VmStateDigest): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${path}: the VM state file is missing`, { path });
  if (st.size !== want.bytes) throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${path}: the VM state file has ${st.size} bytes, ${want.bytes} were saved (truncated or replaced)`, { path });
}

export async function checkVmStateHash(path: string, want: VmStateDigest): Promise<void> {
  // One reused 4 MiB buffer: a read stream's fresh 1 MiB chunks made hashing ~80 MB take
  // 100-260 ms instead of ~65 (SHA-NI), and it is on the restore's critical path (in parallel
  // with QEMU loading the same file, which it used to finish after).
  const hash = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  const got = hash.digest('hex');
  if (got !== want.sha256) throw new MonocoreError('MC_VM_SNAPSHOT_FAILED', `${path}: the VM state file's sha256 is ${got}, ${want.sha256} was saved (corrupted)`, { path });
}
