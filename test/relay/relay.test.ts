/**
 * The relay (API ↔ worker calls through Redis) between a RelayClient and a
 * RelayServer on real Redis, with the real guest agent running as a host
 * process (`init agent --connect`, the code the guest runs): exec, stdin,
 * concurrency, a 64 MiB flood read slowly (every byte in order, the API's
 * inbox never holding more than the window), cancellation, and a worker
 * process killed mid-call (the caller gets an error, not a hang).
 *
 * The same calls run twice: with the API and the worker in this one process, as `monocore
 * serve` runs them (entries are handed over in process: nothing but the inboxes' markers may
 * reach Redis), and with `inProcess: false` (every entry through Redis, as between hosts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import {
  Keys,
  MonocoreError,
  RELAY_WINDOW_BYTES,
  RelayClient,
  RelayServer,
  isMonocoreError,
  type AgentSession,
  type RelayCall,
  type RelayHost,
} from '@monocore/engine';
import { freshDb, quiet, sleep, until } from '../orchestration/support.js';
import { TEST_REDIS_DBS } from '../support/env.js';
import { spawnTied } from '../support/tied-child.js';
import { startHostAgent, type HostAgent } from '../vm/agent-fixtures.js';

const HOST = 'relay-h1';
const WORKER = `1@2026-01-01T00:00:00.000Z`;

const lost = (why: string): MonocoreError => new MonocoreError('MC_EXEC_HOST_LOST', why);

async function collect(call: RelayCall): Promise<{ stdout: Buffer; stderr: Buffer }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  for await (const c of call.output()) (c.stream === 'stdout' ? out : err).push(c.data);
  return { stdout: Buffer.concat(out), stderr: Buffer.concat(err) };
}

/** Entries ever appended to a stream (trimmed ones too): the inbox's marker is one. */
async function entriesAdded(redis: Redis, key: string): Promise<number> {
  const info = (await redis.call('XINFO', 'STREAM', key)) as unknown[];
  return Number(info[info.indexOf('entries-added') + 1]);
}

for (const mode of [
  { name: 'in one process', db: TEST_REDIS_DBS['relay/relay'], inProcess: true },
  { name: 'through Redis (inProcess: false)', db: TEST_REDIS_DBS['relay/relay:redis'], inProcess: false },
] as const) describe(`relay to a real agent, ${mode.name}`, () => {
  const DB = mode.db;
  const viaRedis = mode.inProcess ? {} : ({ inProcess: false } as const);
  let url: string;
  let redis: Redis;
  let agent: HostAgent;
  let session: AgentSession;
  let server: RelayServer;
  let client: RelayClient;
  let clientConn: Redis;

  before(async () => {
    url = await freshDb(DB);
    redis = new Redis(url, { maxRetriesPerRequest: 3 });
    await redis.multi().set(Keys.hostAlive(HOST), '1').hset(Keys.host(HOST), { pid: 1, started_at: '2026-01-01T00:00:00.000Z' }).exec();
    agent = await startHostAgent();
    session = await agent.session();
    const host: RelayHost = {
      worker: WORKER,
      agentOf: async () => session,
      mapError: async (_t, err) => err,
      onActivity: () => undefined,
      restarted: (t) => lost(`restarted ${t.kind}`),
      deleteSandbox: async () => undefined,
    pauseSandbox: async () => undefined,
    resumeSandbox: async () => undefined,
    forkSandbox: async () => undefined,
    };
    server = await RelayServer.start({ redis, hostId: HOST, host, logger: quiet, ...viaRedis });
    clientConn = redis.duplicate();
    client = await RelayClient.open({ redis: clientConn, logger: quiet, idleCheckMs: 300, ...viaRedis });
  });

  after(async () => {
    await client?.close();
    await server?.close();
    session?.close();
    await agent?.stop();
    await clientConn?.quit();
    await redis?.quit();
  });

  const exec = (argv: string[], extra: Record<string, unknown> = {}): Promise<RelayCall> =>
    client.call({ host: HOST, target: { kind: 'service', name: 'svc' }, op: { op: 'exec', argv, stdin: false, ...extra }, hostLost: lost });

  test('exec: output in order, the exit code, and the worker it ran on', async () => {
    const call = await exec(['sh', '-c', 'echo out; echo err >&2; exit 3']);
    const { stdout, stderr } = await collect(call);
    const end = await call.result;
    assert.equal(stdout.toString(), 'out\n');
    assert.equal(stderr.toString(), 'err\n');
    assert.equal(end.exit?.exitCode, 3);
    assert.equal(call.worker, WORKER);
    assert.equal(client.inFlight, 0);
    // The worker forgets the call right after it sent the end.
    await until('the worker to forget the call', async () => server.inFlight === 0);
  });

  test('stdin crosses the relay; 5 concurrent calls each get their own answer', async () => {
    const call = await exec(['sh', '-c', 'cat; echo done'], { stdin: true });
    await call.write(Buffer.from('hello relay\n'));
    await call.end();
    assert.equal((await collect(call)).stdout.toString(), 'hello relay\ndone\n');
    const calls = await Promise.all([1, 2, 3, 4, 5].map((i) => exec(['sh', '-c', `sleep 0.2; echo ${i}`])));
    const outs = await Promise.all(calls.map(async (c) => (await collect(c)).stdout.toString()));
    assert.deepEqual(outs, ['1\n', '2\n', '3\n', '4\n', '5\n']);
  });

  test('a ~60 MB flood read slowly: every byte in order, the inbox never above the window', async () => {
    const n = 8_000_000;
    const call = await exec(['seq', '1', String(n)]);
    const expected = createHash('sha256');
    let line = 1;
    let expectedSize = 0;
    while (line <= n) {
      let s = '';
      for (let k = 0; k < 100_000 && line <= n; k++, line++) s += `${line}\n`;
      expected.update(s);
      expectedSize += s.length;
    }
    const hash = createHash('sha256');
    let got = 0;
    let maxInbox = 0;
    let slow = 40; // the first chunks are consumed slowly: the worker must stop sending, not buffer
    for await (const c of call.output()) {
      hash.update(c.data);
      got += c.data.length;
      if (slow-- > 0) {
        await sleep(20);
        maxInbox = Math.max(maxInbox, Number(await redis.memory('USAGE', client.inboxKey)));
      }
    }
    assert.equal((await call.result).exit?.exitCode, 0);
    assert.equal(got, expectedSize);
    assert.equal(hash.digest('hex'), expected.digest('hex'), 'every byte, in order');
    assert.ok(maxInbox < 2 * RELAY_WINDOW_BYTES, `the API's inbox held ${maxInbox} bytes (window ${RELAY_WINDOW_BYTES})`);
  });

  test('closing a call kills the command (its process is gone)', async () => {
    const call = await exec(['sleep', '300']);
    const { pid } = await call.opened;
    assert.ok(pid && existsSync(`/proc/${pid}`));
    call.close();
    await until('the command to be killed', async () => !existsSync(`/proc/${pid}`) || /^\d+ \([^)]*\) Z/.test(await readStat(pid)));
    await until('the worker to forget the call', async () => server.inFlight === 0);
  });

  test('a call to a host without a worker fails at once', async () => {
    await assert.rejects(
      client.call({ host: 'no-such-host', target: { kind: 'service', name: 'svc' }, op: { op: 'exec', argv: ['true'], stdin: false }, hostLost: lost }),
      (e) => isMonocoreError(e, 'MC_EXEC_HOST_LOST'),
    );
  });

  test(mode.inProcess ? 'nothing but the inboxes\' markers reached Redis' : 'every entry went through Redis', async () => {
    const added = [await entriesAdded(redis, Keys.inbox(`host:${HOST}`)), await entriesAdded(redis, client.inboxKey)];
    if (mode.inProcess) assert.deepEqual(added, [1, 1]);
    // The flood alone is ~60 data entries down (and their credit up); each call is a few entries up.
    else assert.ok(added[0]! > 20 && added[1]! > 60, `entries added: host inbox ${added[0]}, API inbox ${added[1]}`);
  });
});

describe('a worker killed mid-call', () => {
  let child: ChildProcess | undefined;
  after(() => {
    child?.kill('SIGKILL');
  });

  test('the caller gets MC_EXEC_HOST_LOST once the host stops heartbeating, not a hang', async () => {
    const url = await freshDb(TEST_REDIS_DBS['relay/relay:killed']);
    const redis = new Redis(url, { maxRetriesPerRequest: 3 });
    const childPath = fileURLToPath(new URL('./relay-worker-child.js', import.meta.url));
    child = spawnTied(process.execPath, [childPath, url, 'relay-h2'], { stdout: 'pipe' });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until('the child worker to be ready', async () => out.includes('ready'), 30_000);
    const client = await RelayClient.open({ redis, logger: quiet, idleCheckMs: 300 });
    try {
      const call = await client.call({
        host: 'relay-h2',
        target: { kind: 'service', name: 'svc' },
        op: { op: 'exec', argv: ['sleep', '300'], stdin: false },
        hostLost: (why) => new MonocoreError('MC_EXEC_HOST_LOST', why),
      });
      await call.opened;
      child.kill('SIGKILL');
      const t0 = Date.now();
      await assert.rejects(call.result, (e) => isMonocoreError(e, 'MC_EXEC_HOST_LOST') && /stopped heartbeating/.test(e.message));
      assert.ok(Date.now() - t0 < 20_000);
    } finally {
      await client.close();
      await redis.quit();
    }
  });
});

async function readStat(pid: number): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
}
