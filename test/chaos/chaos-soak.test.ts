// The chaos soak, 2 minutes of faults (test/chaos/soak.ts says what runs and what
// is checked). Longer runs: `npm run bench -- chaos MINUTES` (bench/chaos.mjs).
// Boots: 20 at first, then one per fault that takes VMs down (TCG).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { holdVmTestLock } from '../support/vm-test-lock.js';
import { testEnv } from '../support/env.js';
import { runSoak } from './soak.js';

// Alone among the VM tests: wait for those running, hold off the others (test/support/vm-test-lock.ts).
holdVmTestLock(testEnv().stateDir, 'exclusive');

test('chaos soak (2 min): never two copies, recovery within the bound, no deployment stuck, nothing left after remove', { timeout: 30 * 60_000 }, async () => {
  const seed = process.env.MONOCORE_CHAOS_SEED ? Number(process.env.MONOCORE_CHAOS_SEED) : undefined;
  const report = await runSoak({
    durationMs: Number(process.env.MONOCORE_CHAOS_MS ?? 120_000),
    ...(seed !== undefined ? { seed } : {}),
    log: (line) => console.log(`# ${line}`),
  });
  assert.deepEqual(report.violations, [], `never two live copies (seed ${report.seed})`);
  assert.ok(Number.isFinite(report.recoveryMs), `every desired service ran again within ${report.recoveryBoundMs} ms of the last fault (seed ${report.seed})`);
  assert.deepEqual(report.deployments.stuck, [], `no deployment stuck (seed ${report.seed})`);
  assert.deepEqual(report.leftovers, [], `nothing left after remove (seed ${report.seed})`);
  assert.deepEqual(report.exitedOnTheirOwn, [], `no worker or API exited by itself (seed ${report.seed})`);
  assert.ok(Object.values(report.faults).reduce((a, b) => a + b, 0) >= 5, `faults were injected: ${JSON.stringify(report.faults)}`);
  assert.ok(report.samples > 100, 'the watcher sampled the whole run');
});
