// The loopback services OCI tests use (started by `bash scripts/test-services.sh start`).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MonocoreHome } from '@monocore/engine';

function need(name: string): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: start the test services with \`bash scripts/test-services.sh start && source .monocore-test/env.sh\` (npm test does this)`);
  }
  return v;
}

export function ociTestEnv(): { registry: string; redisUrl: string } {
  return { registry: need('MONOCORE_TEST_REGISTRY'), redisUrl: need('MONOCORE_TEST_REDIS_URL') };
}

/** A fresh MONOCORE_HOME in a temp dir. */
export async function tempHome(): Promise<{ home: MonocoreHome; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mc-home-'));
  return { home: new MonocoreHome(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
}
