import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderHostsTable } from './hosts-table.js';

test('renderHostsTable: one row per host sorted by id, capacity as used/total, spares, heartbeat age', () => {
  const out = renderHostsTable([
    {
      id: 'w2', alive: false, version: '0.3.0', backends: ['qemu'], accel: 'kvm', cpus: 16, ramMib: 8192,
      usedCpus: 0, usedRamMib: 0, freeCpus: 16, freeRamMib: 8192, allocations: {}, heartbeatAgeMs: 95_000,
    },
    {
      id: 'w1', alive: true, version: '0.3.0', backends: ['qemu'], accel: 'tcg', cpus: 8, ramMib: 4096,
      usedCpus: 2, usedRamMib: 384, freeCpus: 6, freeRamMib: 3712, allocations: { a: {}, b: {} }, spares: { count: 1, ramMib: 512 }, heartbeatAgeMs: 1_200,
    },
    { id: 'w3', alive: true, backends: [], cpus: 4, ramMib: 1024, usedCpus: 0, usedRamMib: 0, freeCpus: 4, freeRamMib: 1024, allocations: {} },
  ]);
  const lines = out.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^HOST\s+STATE\s+BACKEND\s+ACCEL\s+VERSION\s+CPUS\s+FREE CPUS\s+MEMORY MiB\s+FREE MiB\s+SPARES\s+SERVICES\s+HEARTBEAT$/);
  assert.match(lines[1] ?? '', /^w1\s+alive\s+qemu\s+tcg\s+0\.3\.0\s+2\/8\s+6\s+384\/4096\s+3712\s+1 \(512 MiB\)\s+2\s+1s ago$/);
  assert.match(lines[2] ?? '', /^w2\s+dead\s+qemu\s+kvm\s+0\.3\.0\s+0\/16\s+16\s+0\/8192\s+8192\s+-\s+0\s+1m35s ago$/);
  assert.match(lines[3] ?? '', /^w3\s+alive\s+-\s+-\s+-\s+0\/4\s+4\s+0\/1024\s+1024\s+-\s+0\s+-$/);
  assert.match(renderHostsTable([]), /no worker hosts registered/);
});
