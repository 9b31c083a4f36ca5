// The relay's share of a sandbox file transfer, without a VM or HTTP: MIB MiB written then read
// through RelayClient → Redis → RelayServer → the guest agent running as a host process (with a
// bulk lane file), against the same agent called directly. Run after `npm run build` with the test
// services up (`. .monocore-test/env.sh`):
//   node bench/relay.mjs [MIB=64] [ROUNDS=3]
// Client and server share this process, so entries are handed over in process (docs/RELAY.md "In one
// process"), as under `monocore serve`; MONOCORE_BENCH_STACK=split sends them through Redis
// (`inProcess: false`), as between an API and a worker on different hosts.
// Prints one JSON line per round: upload/download seconds through the relay and direct.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Keys, MonocoreError, RelayClient, RelayServer } from '@monocore/engine';
import { startHostAgent } from '../dist/test/vm/agent-fixtures.js';

const MIB = Number(process.argv[2] ?? 64);
const ROUNDS = Number(process.argv[3] ?? 3);
const quiet = pino({ level: 'silent' });
const redis = new Redis(`${process.env.MONOCORE_TEST_REDIS_URL.replace(/\/\d*$/, '')}/41`);
await redis.flushdb();
const HOST = 'bench-relay';
await redis.multi().set(Keys.hostAlive(HOST), '1').hset(Keys.host(HOST), { pid: 1, started_at: 'x' }).exec();
const agent = await startHostAgent({ lane: true });
const session = await agent.session();
const host = {
  worker: 'w', agentOf: async () => session, mapError: async (_t, e) => e, onActivity: () => undefined,
  restarted: () => new MonocoreError('MC_EXEC_HOST_LOST', 'restarted'), deleteSandbox: async () => undefined,
};
const viaRedis = process.env.MONOCORE_BENCH_STACK === 'split' ? { inProcess: false } : {};
const server = await RelayServer.start({ redis, hostId: HOST, host, logger: quiet, ...viaRedis });
const clientRedis = redis.duplicate();
const client = await RelayClient.open({ redis: clientRedis, logger: quiet, ...viaRedis });
const lost = (m) => new MonocoreError('MC_EXEC_HOST_LOST', m);
const target = { kind: 'sandbox', id: 'sb-benchrelay00' };
const data = randomBytes(MIB << 20);
const dir = join(tmpdir(), `mc-bench-relay-${process.pid}`);
const s = (t) => Math.round((performance.now() - t) / 10) / 100;
for (let i = 0; i < ROUNDS; i++) {
  const path = join(dir, `f${i}`);
  let t = performance.now();
  const w = await client.call({ host: HOST, target, op: { op: 'write', path, maxBytes: 1 << 30 }, hostLost: lost });
  for (let o = 0; o < data.length; o += 1 << 20) await w.write(data.subarray(o, o + (1 << 20)));
  await w.end();
  for await (const _ of w.output());
  await w.result;
  const relayUp = s(t);
  t = performance.now();
  const r = await client.call({ host: HOST, target, op: { op: 'read', path }, hostLost: lost });
  let n = 0;
  for await (const c of r.output()) n += c.data.length;
  await r.result;
  const relayDown = s(t);
  if (n !== data.length) throw new Error(`read ${n} of ${data.length} bytes`);
  t = performance.now();
  await session.writeFile(`${path}.direct`, data);
  const directUp = s(t);
  t = performance.now();
  const f = await session.readFile(`${path}.direct`);
  for await (const _ of f.body);
  const directDown = s(t);
  console.log(JSON.stringify({ measure: 'relay', stack: viaRedis.inProcess === false ? 'split' : 'serve', mib: MIB, relay_s: { up: relayUp, down: relayDown }, direct_agent_s: { up: directUp, down: directDown } }));
}
await client.close();
await server.close();
session.close();
await agent.stop();
rmSync(dir, { recursive: true, force: true });
await clientRedis.quit();
await redis.quit();
