import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MonocoreError } from '../errors/index.js';
import type { HostCapacity } from '../state/host-registry.js';
import { placeServices } from './placement.js';

const host = (id: string, cpus: number, ramMib: number): HostCapacity => ({
  id, cpus, ramMib, backends: ['qemu'], alive: true, usedCpus: 0, usedRamMib: 0, freeCpus: cpus, freeRamMib: ramMib, allocations: {},
});

test('services spread to the host with the most free RAM', () => {
  const p = placeServices(
    [1, 2, 3, 4].map((i) => ({ name: `s${i}`, cpus: 1, ramMib: 512 })),
    [host('a', 8, 1024), host('b', 8, 2048)],
  );
  const count = (h: string) => [...p.values()].filter((x) => x === h).length;
  assert.equal(count('b'), 3);
  assert.equal(count('a'), 1);
});

test('a group lands on one host; a pinned group stays where it runs', () => {
  const reqs = [
    { name: 'x', group: 'g', cpus: 1, ramMib: 300 },
    { name: 'y', group: 'g', cpus: 1, ramMib: 300 },
    { name: 'z', cpus: 1, ramMib: 300 },
  ];
  const p = placeServices(reqs, [host('a', 4, 1000), host('b', 4, 700)]);
  assert.equal(p.get('x'), p.get('y'));
  const pinned = placeServices(reqs, [host('a', 4, 1000), host('b', 4, 700)], new Map([['g', 'b']]));
  assert.equal(pinned.get('x'), 'b');
  assert.equal(pinned.get('y'), 'b');
});

test('no capacity: MC_ORCH_NO_CAPACITY naming the unit and the free capacity; no hosts: MC_ORCH_NO_HOSTS', () => {
  assert.throws(
    () => placeServices([{ name: 'big', cpus: 2, ramMib: 4096 }], [host('a', 4, 1024)]),
    (e: unknown) => e instanceof MonocoreError && e.code === 'MC_ORCH_NO_CAPACITY' && /service "big"/.test(e.message) && /a 4 cpus\/1024 MiB/.test(e.message),
  );
  assert.throws(() => placeServices([{ name: 'x', cpus: 1, ramMib: 64 }], []), { code: 'MC_ORCH_NO_HOSTS' });
});
