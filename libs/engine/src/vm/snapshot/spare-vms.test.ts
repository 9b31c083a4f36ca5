import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SparePool, spareKey, type Spare } from './spare-vms.js';
import type { VmSpec } from '../vm-spec.js';

class FakeSpare implements Spare {
  discarded = 0;
  constructor(readonly name: string) {}
  async discard(): Promise<void> {
    this.discarded++;
  }
}

const settle = (): Promise<void> => sleep(5);

test('SparePool: take hands a ready spare over once; a key has one spare, made once however often it is asked for', async () => {
  const pool = new SparePool<FakeSpare>({ max: 2, idleMs: 60_000 });
  let made = 0;
  const make = async (): Promise<FakeSpare> => new FakeSpare(`s${++made}`);
  pool.replenish('a', 256, make);
  pool.replenish('a', 256, make); // being made: not again
  assert.equal(pool.take('a'), undefined, 'not ready yet');
  await settle();
  pool.replenish('a', 256, make); // ready: not again
  assert.equal(made, 1);
  const s = pool.take('a');
  assert.equal(s?.name, 's1');
  assert.equal(pool.take('a'), undefined, 'taken once');
  assert.equal(s.discarded, 0, 'a taken spare is the caller\'s');
  await pool.close();
  assert.equal(s.discarded, 0);
});

test('SparePool: past the limit the spare used least recently makes room; a failed make leaves no entry', async () => {
  const pool = new SparePool<FakeSpare>({ max: 2, idleMs: 60_000, onError: (err, key) => errors.push(`${key}: ${(err as Error).message}`) });
  const errors: string[] = [];
  const spares: FakeSpare[] = [];
  const make = (name: string) => async (): Promise<FakeSpare> => {
    const s = new FakeSpare(name);
    spares.push(s);
    return s;
  };
  pool.replenish('a', 256, make('a'));
  await sleep(2);
  pool.replenish('b', 256, make('b'));
  await settle();
  pool.replenish('c', 256, make('c'));
  await settle();
  assert.deepEqual(pool.ready.map((s) => s.name).sort(), ['b', 'c']);
  assert.equal(spares.find((s) => s.name === 'a')?.discarded, 1);
  pool.replenish('d', 256, () => Promise.reject(new Error('no template')));
  await settle();
  assert.deepEqual(errors, ['d: no template']);
  assert.equal(pool.ready.length, 1, 'b (used least recently) made room for d, which then failed');
  await pool.close();
});

test('SparePool: an untaken spare is discarded after idleMs; a dead one is forgotten; close waits for one still being made and discards it', async () => {
  const pool = new SparePool<FakeSpare>({ max: 3, idleMs: 30 });
  const idle = new FakeSpare('idle');
  pool.replenish('a', 256, async () => idle);
  await settle();
  assert.equal(pool.ready.length, 1);
  await sleep(60);
  assert.equal(pool.ready.length, 0);
  assert.equal(idle.discarded, 1);

  const dead = new FakeSpare('dead');
  pool.replenish('b', 256, async () => dead);
  await settle();
  pool.forget(dead);
  assert.equal(pool.take('b'), undefined);

  let finish!: (s: FakeSpare) => void;
  const late = new FakeSpare('late');
  pool.replenish('c', 256, () => new Promise((r) => (finish = r)));
  const closed = pool.close();
  finish(late);
  await closed;
  assert.equal(late.discarded, 1, 'close() waits for a spare being made and discards it');
  pool.replenish('d', 256, async () => new FakeSpare('never'));
  assert.equal(pool.enabled, false);
  assert.equal(pool.ready.length, 0);
});

test('SparePool: spares take only the room the host has left; a start that needs it discards them, least recently used first', async () => {
  let room = 1024;
  const pool = new SparePool<FakeSpare>({ max: 4, idleMs: 60_000, roomMib: () => room });
  const a = new FakeSpare('a');
  const b = new FakeSpare('b');
  pool.replenish('a', 512, async () => a);
  await sleep(2);
  pool.replenish('b', 512, async () => b);
  pool.replenish('c', 256, async () => new FakeSpare('c')); // 512 + 512 + 256 > 1024: not made
  await settle();
  assert.deepEqual(pool.ready.map((s) => s.name), ['a', 'b']);
  assert.equal(pool.heldMib, 1024);
  assert.deepEqual(pool.readyUsage, { count: 2, ramMib: 1024 });
  pool.trim(1024 - 256); // a 256 MiB VM starts: the oldest spare makes room
  assert.deepEqual(pool.ready.map((s) => s.name), ['b']);
  assert.equal(a.discarded, 1);
  pool.trim(512);
  assert.deepEqual(pool.ready.map((s) => s.name), ['b'], 'it still fits');

  // The room shrank while a spare loaded: it is discarded as it finishes.
  let finish!: (s: FakeSpare) => void;
  const late = new FakeSpare('late');
  pool.replenish('d', 256, () => new Promise((r) => (finish = r)));
  room = 600;
  finish(late);
  await settle();
  assert.equal(late.discarded, 1);
  assert.deepEqual(pool.ready.map((s) => s.name), ['b']);
  await pool.close();
  assert.equal(b.discarded, 1);
});

test('spareKey: sandboxes with no network, volumes or ports; the key follows what shapes the VM, not its identity', () => {
  const base: VmSpec = { id: 'a', rootfs: '/r', command: '', args: [], env: ['A=1'], cpus: 1, ramMib: 256, volumes: [], ports: [], stateDir: '/s/a', network: { mode: 'none' }, sandbox: true };
  const k = spareKey(base, 4096);
  assert.match(k ?? '', /^[0-9a-f]{64}$/);
  assert.equal(spareKey({ ...base, id: 'b', env: ['B=2'], hostname: 'h', user: 'nobody', stateDir: '/s/b' }, 4096), k);
  assert.notEqual(spareKey({ ...base, ramMib: 512 }, 4096), k);
  assert.notEqual(spareKey(base, 1024), k);
  assert.notEqual(spareKey({ ...base, rlimits: [{ resource: 'nofile', soft: 10, hard: 10 }] }, 4096), k);
  assert.equal(spareKey({ ...base, sandbox: false }, 4096), undefined);
  assert.equal(spareKey({ ...base, coldBoot: true }, 4096), undefined);
  assert.equal(spareKey({ ...base, network: { mode: 'group', group: 'g', address: '10.0.0.2', peers: {}, localOnly: true } }, 4096), undefined);
  assert.equal(spareKey({ ...base, volumes: [{ host: '/h', guest: '/g' }] }, 4096), undefined);
  assert.equal(spareKey({ ...base, ports: [{ host: 1, guest: 2 }] }, 4096), undefined);
});
