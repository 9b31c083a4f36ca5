import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, renderStatusTable, statusLabel } from './status-table.js';

test('formatDuration', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(59_999), '59s');
  assert.equal(formatDuration(65_000), '1m05s');
  assert.equal(formatDuration(2 * 3600_000 + 3 * 60_000), '2h03m');
  assert.equal(formatDuration(3 * 86400_000 + 4 * 3600_000), '3d04h');
  assert.equal(formatDuration(-5), '0s');
});

test('statusLabel carries the data of exited and blocked', () => {
  assert.equal(statusLabel({ name: 'a', status: 'exited', exitCode: 3 }), 'exited(3)');
  assert.equal(statusLabel({ name: 'a', status: 'exited' }), 'exited(?)');
  assert.equal(statusLabel({ name: 'a', status: 'blocked', blockedBy: 'db' }), 'blocked(db)');
  assert.equal(statusLabel({ name: 'a', status: 'running' }), 'running');
});

test('renderStatusTable: every column, sorted by group then name, long errors cut to the width', () => {
  const now = Date.parse('2026-01-01T00:10:00Z');
  const out = renderStatusTable(
    [
      { name: 'web', group: 'app', status: 'running', host: 'h1', pid: 42, restarts: 1, startedAt: '2026-01-01T00:05:00Z' },
      { name: 'db', group: 'app', status: 'failed', host: 'h1', restarts: 5, exitCode: 137, lastError: `boot failed ${'x'.repeat(200)}` },
      { name: 'solo', status: 'blocked', blockedBy: 'db' },
    ],
    now,
    100,
  );
  const lines = out.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^SERVICE\s+GROUP\s+STATUS\s+HOST\s+PID\s+RESTARTS\s+UPTIME\s+EXIT\s+LAST ERROR$/);
  assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)[0]), ['solo', 'db', 'web']);
  assert.match(lines[3] ?? '', /^web\s+app\s+running\s+h1\s+42\s+1\s+5m00s\s+-\s+-$/);
  assert.match(lines[2] ?? '', /^db\s+app\s+failed\s+h1\s+-\s+5\s+-\s+137\s+boot failed x+…$/);
  assert.ok((lines[2] ?? '').length <= 100);
  assert.match(lines[1] ?? '', /^solo\s+-\s+blocked\(db\)\s.*dependency db failed$/);
  assert.match(renderStatusTable([]), /no services/);
});
