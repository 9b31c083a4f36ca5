// HostLock: flock(2)-based, exclusive across processes and within one, and
// released by the kernel when its holder is SIGKILLed (no stale lock to steal).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { HostLock, isMonocoreError } from '@monocore/engine';
import { removeTempDirs, tempDir } from './tree.js';

after(removeTempDirs);

test('two holders in one process exclude each other; release hands over', async () => {
  const file = join(tempDir('lock'), 'a.lock');
  const first = await HostLock.acquire(file);
  assert.equal(await HostLock.tryAcquire(file), undefined);
  let waited = '';
  const second = HostLock.acquire(file, { pollMs: 10, onWait: (h) => (waited = h) });
  for (let i = 0; i < 500 && waited === ''; i++) await new Promise((r) => setTimeout(r, 10)); // until the second waits
  await first.release();
  const lock = await second;
  assert.match(waited, new RegExp(`^${process.pid} `), 'the waiter saw who held the lock');
  await assert.rejects(HostLock.acquire(file, { timeoutMs: 100, pollMs: 20 }), (e) => isMonocoreError(e, 'MC_ROOTFS_UNPACK_FAILED') && /still held after/.test(e.message));
  await lock.release();
});

test('a SIGKILLed holder in another process releases the lock', async () => {
  const file = join(tempDir('lock-kill'), 'b.lock');
  const child = spawn(process.execPath, [fileURLToPath(new URL('./lock-child.js', import.meta.url)), file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  assert.equal(line, 'locked');
  assert.equal(await HostLock.tryAcquire(file), undefined, 'held by the child');
  child.kill('SIGKILL');
  await once(child, 'close');
  const lock = await HostLock.acquire(file, { timeoutMs: 5_000 });
  await lock.release();
});
