// The loopback services OCI tests use, through the shared test/support/env.ts
// (started by `bash scripts/test-services.sh start`; a missing one fails loudly).
import { rm } from 'node:fs/promises';
import { MonocoreHome } from '@monocore/engine';
import { tempDir, testEnv } from '../../support/env.js';

export function ociTestEnv(): { registry: string; redisUrl: string; image: string } {
  const env = testEnv();
  return { registry: env.registry, redisUrl: env.redisUrl, image: env.image };
}

/** A fresh MONOCORE_HOME under .monocore-test/tmp. */
export async function tempHome(): Promise<{ home: MonocoreHome; cleanup(): Promise<void> }> {
  const dir = tempDir('oci-home-');
  return { home: new MonocoreHome(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
}
