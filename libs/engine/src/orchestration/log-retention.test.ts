import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogRetention, RotatingLogWriter } from './log-retention.js';

test('rotates by size, keeps maxFiles rotated files, and passes complete lines on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-logs-'));
  try {
    const lines: string[] = [];
    const w = new RotatingLogWriter({
      path: join(dir, 'svc.stdout.log'),
      policy: { maxBytes: 100, maxFiles: 2, maxAgeMs: 60_000 },
      onLine: (l) => lines.push(l),
    });
    for (let i = 0; i < 20; i++) w.write(`line ${String(i).padStart(2, '0')} ${'x'.repeat(20)}\n`);
    w.write('partial');
    await new Promise<void>((r) => w.end(r));
    assert.equal(lines.length, 21);
    assert.equal(lines[20], 'partial');
    assert.ok(existsSync(join(dir, 'svc.stdout.log.1')));
    assert.ok(existsSync(join(dir, 'svc.stdout.log.2')));
    assert.ok(!existsSync(join(dir, 'svc.stdout.log.3')), 'beyond maxFiles is deleted');
    assert.match(readFileSync(join(dir, 'svc.stdout.log'), 'utf8'), /partial$/);
    assert.ok(readFileSync(join(dir, 'svc.stdout.log'), 'utf8').length <= 100);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rotated files older than maxAge are deleted (one week by default)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-logs-'));
  try {
    const path = join(dir, 'svc.stderr.log');
    writeFileSync(`${path}.1`, 'recent\n');
    writeFileSync(`${path}.2`, 'old\n');
    const eightDaysAgo = (Date.now() - 8 * 24 * 3600 * 1000) / 1000;
    utimesSync(`${path}.2`, eightDaysAgo, eightDaysAgo);
    const w = new RotatingLogWriter({ path, policy: LogRetention.withMaxAgeWeeks(1) });
    assert.ok(existsSync(`${path}.1`));
    assert.ok(!existsSync(`${path}.2`));
    w.end();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
