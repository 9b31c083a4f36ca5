import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMonocoreError } from '../errors/index.js';
import { MonocoreHome } from '../home/index.js';
import { LocalContentStore } from './local-content-store.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function withStore(fn: (s: LocalContentStore, home: MonocoreHome) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), 'mc-store-'));
  try {
    const home = new MonocoreHome(dir);
    await fn(new LocalContentStore(home), home);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('put verifies the digest; committed blobs are read-only and listed', () =>
  withStore(async (s) => {
    const data = Buffer.from('hello');
    await assert.rejects(s.put(sha(Buffer.from('other')), data), (e: unknown) => isMonocoreError(e, 'MC_OCI_DIGEST_MISMATCH'));
    await assert.rejects(s.put(sha(data), data, 4), (e: unknown) => isMonocoreError(e, 'MC_OCI_SIZE_MISMATCH'));
    const info = await s.put(sha(data), data);
    assert.equal(((await stat(info.path)).mode & 0o777).toString(8), '444');
    assert.deepEqual((await s.list()).map((b) => b.digest), [sha(data)]);
    assert.deepEqual(await s.read(sha(data)), data);
  }));

test('ensure: concurrent callers share one fill; a resumed ingest re-hashes what is on disk', () =>
  withStore(async (s) => {
    const data = Buffer.alloc(700_000, 7);
    let fills = 0;
    const fill = async (w: { offset: number; write(c: Uint8Array): Promise<void> }) => {
      fills++;
      for (let i = w.offset; i < data.length; i += 100_000) await w.write(data.subarray(i, Math.min(i + 100_000, data.length)));
    };
    const [a, b] = await Promise.all([s.ensure(sha(data), data.length, fill), s.ensure(sha(data), data.length, fill)]);
    assert.equal(fills, 1);
    assert.equal(a.path, b.path);

    const data2 = Buffer.alloc(600_000, 9);
    const w = await s.openWriter(sha(data2), data2.length);
    assert.ok(w);
    await w.write(data2.subarray(0, 300_000));
    await w.close(); // interrupted: keeps the partial data
    const w2 = await s.openWriter(sha(data2), data2.length);
    assert.equal(w2?.offset, 300_000, 'close() flushed the buffered bytes; the new writer resumes after them');
    await w2!.write(data2.subarray(w2!.offset));
    const info = await w2!.commit();
    assert.equal(info.size, data2.length);
  }));

test('a wrong size or digest at commit deletes the ingest and stores nothing', () =>
  withStore(async (s, home) => {
    const data = Buffer.from('0123456789');
    const w = await s.openWriter(sha(data), 10);
    await w!.write(Buffer.from('0123456780'));
    await assert.rejects(w!.commit(), (e: unknown) => isMonocoreError(e, 'MC_OCI_DIGEST_MISMATCH'));
    const w2 = await s.openWriter(sha(data), 10);
    await assert.rejects(w2!.write(Buffer.from('0123456789X')), (e: unknown) => isMonocoreError(e, 'MC_OCI_SIZE_MISMATCH'));
    assert.equal(await s.info(sha(data)), undefined);
    assert.deepEqual(await readdir(home.ingestDir), []);
  }));
