import { Redis } from 'ioredis';
import { redisUrl } from '../support/env.js';

/**
 * Redis for the API tests: the shared test Redis (scripts/test-services.sh),
 * on a database index of the API's own so that flushing it never touches
 * another suite's state (the orchestrator's keys have a fixed prefix).
 * (TEST_REDIS_DBS in test/support/env.ts).
 */
export function apiTestRedisUrl(db: number): string {
  const u = new URL(redisUrl()); // throws loudly, naming the variable, when the services are not up
  u.pathname = `/${db}`;
  return u.toString();
}

export async function flushDb(url: string): Promise<void> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    await r.flushdb();
  } finally {
    r.disconnect();
  }
}

export const TOKEN = 'test-token-0123456789abcdef';
