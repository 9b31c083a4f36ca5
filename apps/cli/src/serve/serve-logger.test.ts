import { test } from 'node:test';
import assert from 'node:assert/strict';
import { humanLine } from './serve-logger.js';

test('humanLine: concise, level shown only when not info, request logs dropped', () => {
  const time = Date.parse('2026-01-01T12:34:56Z');
  assert.equal(humanLine(JSON.stringify({ level: 30, time, pid: 1, msg: 'worker ready', hostId: 'h1' })), '12:34:56 worker ready  hostId=h1');
  assert.equal(
    humanLine(JSON.stringify({ level: 50, time, name: 'api', msg: 'failed', err: { message: 'boom', stack: 'at x' } })),
    '12:34:56 ERROR api: failed  error="boom"',
  );
  assert.equal(humanLine(JSON.stringify({ level: 30, time, msg: 'incoming request', req: { url: '/status' } })), undefined);
  assert.equal(humanLine('not json'), 'not json');
  const long = humanLine(JSON.stringify({ level: 40, time, msg: 'm', list: 'y'.repeat(200) }));
  assert.match(long ?? '', /^12:34:56 WARN m {2}list=y{77}\.\.\.$/);
});
