import { Redis } from 'ioredis';
import { redisUrl } from '../support/env.js';

/**
 * Redis for the API tests: the shared test Redis (scripts/test-services.sh),
 * on a database index of the API's own so that flushing it never touches
 * another suite's state (the orchestrator's keys have a fixed prefix).
 *   DB 4: metrics.test.ts   DB 7: cli-closed-output.test.ts   DB 12: api-surface.test.ts   DB 13: api-streams.test.ts
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
