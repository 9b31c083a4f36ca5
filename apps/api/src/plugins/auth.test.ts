import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopback } from '../start-api.js';
import { presentedToken, tokenMatches } from './auth.js';

test('tokenMatches compares the whole token', () => {
  const token = 'abcdefghijklmnop-0123';
  assert.equal(tokenMatches(token, token), true);
  assert.equal(tokenMatches(token, token.slice(0, -1)), false);
  assert.equal(tokenMatches(token, `${token}x`), false);
  assert.equal(tokenMatches(token, ''), false);
  assert.equal(tokenMatches(token, undefined), false);
});

test('presentedToken reads Bearer and Basic (password = token), nothing else', () => {
  assert.equal(presentedToken('Bearer abc'), 'abc');
  assert.equal(presentedToken('bearer  abc '), 'abc');
  assert.equal(presentedToken(`Basic ${Buffer.from('admin:s3cret:with:colons').toString('base64')}`), 's3cret:with:colons');
  assert.equal(presentedToken(`Basic ${Buffer.from('no-colon').toString('base64')}`), undefined);
  assert.equal(presentedToken('Token abc'), undefined);
  assert.equal(presentedToken('abc'), undefined);
  assert.equal(presentedToken(undefined), undefined);
});

test('isLoopback: only loopback addresses count', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost']) assert.equal(isLoopback(h), true, h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'example.com', '128.0.0.1']) assert.equal(isLoopback(h), false, h);
});

test('startApi refuses a non-loopback address without a token (before touching Redis)', async () => {
  const { startApi } = await import('../start-api.js');
  await assert.rejects(
    startApi({ redisUrl: 'redis://127.0.0.1:1', host: '0.0.0.0', port: 0 }),
    (err: Error & { code?: string }) => err.code === 'MC_USAGE' && /not loopback.*MONOCORE_API_TOKEN/.test(err.message),
  );
});
