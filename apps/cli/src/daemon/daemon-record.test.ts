import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readDaemonRecord, writeDaemonRecord, type DaemonRecord } from './daemon-record.js';
import { isRunning, procStat } from './proc-table.js';

test('daemon record: round trip; missing is undefined; a hand-edited one is unreadable with the field named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-daemon-record-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'run', 'daemon.json');
  assert.equal(await readDaemonRecord(path), undefined);
  const record: DaemonRecord = { pid: 42, startTime: 7, url: 'http://127.0.0.1:3456', startedAt: '2026-01-01T00:00:00.000Z', version: '0.3.0', log: '/x/daemon.log' };
  await writeDaemonRecord(path, record);
  assert.deepEqual(await readDaemonRecord(path), record);
  writeFileSync(path, '{"pid": "42"');
  assert.deepEqual(await readDaemonRecord(path), { unreadable: 'not JSON' });
  writeFileSync(path, JSON.stringify({ ...record, pid: -1, url: 'ftp://x' }));
  const bad = await readDaemonRecord(path);
  assert.ok(bad && 'unreadable' in bad);
  assert.match(bad.unreadable, /^pid: .*; url: /);
});

test('procStat: this process, its session and start time; a pid that does not exist is not running', async () => {
  const me = await procStat(process.pid);
  assert.ok(me);
  assert.equal(me.pid, process.pid);
  // 0 when this process's session leader lives outside its pid namespace (CI runs tests so).
  assert.ok(Number.isInteger(me.session) && me.session >= 0);
  assert.equal(await isRunning(process.pid, me.startTime), true);
  // The same pid with another start time is another process (pid reuse): not the one recorded.
  assert.equal(await isRunning(process.pid, me.startTime + 1), false);
  assert.equal(await isRunning(2 ** 22 + 1), false);
});
