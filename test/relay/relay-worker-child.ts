/**
 * A worker process for relay.test.ts, to be killed with SIGKILL mid-call: a
 * real agent (host mode), a RelayServer, and the host heartbeat key the API
 * checks (1 s TTL, refreshed every 300 ms). Prints "ready" when it serves.
 * Usage: node relay-worker-child.js REDIS_URL HOST_ID
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Keys, MonocoreError, RelayServer } from '@monocore/engine';
import { startHostAgent } from '../vm/agent-fixtures.js';

const [url, hostId] = process.argv.slice(2) as [string, string];
const redis = new Redis(url, { maxRetriesPerRequest: null });
const startedAt = new Date().toISOString();
const beat = async (): Promise<void> => {
  await redis.multi().set(Keys.hostAlive(hostId), '1', 'PX', 1000).hset(Keys.host(hostId), { pid: process.pid, started_at: startedAt }).exec();
};
await beat();
setInterval(() => void beat(), 300);
const agent = await startHostAgent();
const session = await agent.session();
// The agent dies with this process (its socket closes; the test kills it by pid too).
process.on('exit', () => agent.proc.kill('SIGKILL'));
await RelayServer.start({
  redis,
  hostId,
  logger: pino({ level: 'silent' }),
  host: {
    worker: `${process.pid}@${startedAt}`,
    agentOf: async () => session,
    mapError: async (_t, err) => err,
    onActivity: () => undefined,
    restarted: () => new MonocoreError('MC_EXEC_HOST_LOST', 'restarted'),
    deleteSandbox: async () => undefined,
    pauseSandbox: async () => undefined,
    resumeSandbox: async () => undefined,
    forkSandbox: async () => undefined,
  },
});
process.stdout.write('ready\n');
