import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ReaderConnection, encodeCommand } from './reader-connection.js';
import { RespError, RespProtocolError, type RespLimits } from './resp-reader.js';

const LIMITS: RespLimits = { maxBulk: 1 << 20, maxArray: 16, maxDepth: 6 };

/** A stand-in for Redis: answers each command (one per data event is enough here) with `answer(args)`. */
async function fakeRedis(answer: (cmd: string) => string | Buffer): Promise<{ port: number; commands: string[]; close(): Promise<void> }> {
  const commands: string[] = [];
  const server = net.createServer((s) => {
    s.on('data', (d) => {
      const cmd = d.toString('latin1');
      commands.push(cmd);
      s.write(answer(cmd));
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    commands,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

test('ReaderConnection: authenticates, selects the database, and reads replies in order', async () => {
  const redis = await fakeRedis((cmd) => (cmd.includes('XREAD') ? '*1\r\n$5\r\nhello\r\n:5\r\n' : cmd.includes('BAD') ? '-ERR nope\r\n' : '+OK\r\n'));
  const c = await ReaderConnection.open({ host: '127.0.0.1', port: redis.port, username: 'u', password: 'p', db: 3 }, LIMITS);
  assert.deepEqual(redis.commands.slice(0, 2), [encodeCommand(['AUTH', 'u', 'p']).toString('latin1'), encodeCommand(['SELECT', '3']).toString('latin1')]);
  // Both replies come in one packet: each goes to its command, in order.
  const first = c.command(['XREAD', 'x']);
  const second = c.command(['PING']);
  assert.deepEqual(await first, [Buffer.from('hello')]);
  assert.equal(await second, 5);
  await assert.rejects(c.command(['BAD']), RespError, 'an error reply rejects that command only');
  assert.equal(c.failed, false);
  c.close();
  await redis.close();
});

test('ReaderConnection: bytes that are not RESP, or a reply to nothing, end the connection without throwing', async () => {
  for (const garbage of ['HTTP/1.1 400 Bad Request\r\n\r\n', '$3\r\nabcdef\r\n']) {
    const redis = await fakeRedis((cmd) => (cmd.includes('PING') ? '+PONG\r\n' : garbage));
    const c = await ReaderConnection.open({ host: '127.0.0.1', port: redis.port }, LIMITS);
    await assert.rejects(c.command(['XREAD']), RespProtocolError);
    assert.equal(c.failed, true);
    await assert.rejects(c.command(['PING']), RespProtocolError, 'a failed connection answers nothing more');
    await redis.close();
  }
  const redis = await fakeRedis(() => '+PONG\r\n+EXTRA\r\n');
  const c = await ReaderConnection.open({ host: '127.0.0.1', port: redis.port }, LIMITS);
  assert.equal(c.failed, true, 'a reply to no command');
  await assert.rejects(c.command(['PING']), RespProtocolError);
  await redis.close();
});

test('ReaderConnection: a Redis that does not answer in time, or is not there, fails the command', async () => {
  const silent = await fakeRedis((cmd) => (cmd.includes('PING') ? '+PONG\r\n' : ''));
  const c = await ReaderConnection.open({ host: '127.0.0.1', port: silent.port }, LIMITS);
  await assert.rejects(c.command(['XREAD'], 100), /did not answer XREAD within 100 ms/);
  assert.equal(c.failed, true);
  await silent.close();
  await assert.rejects(ReaderConnection.open({ host: '127.0.0.1', port: silent.port }, LIMITS, 1000));
});
