import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMonocoreError } from '@monocore/engine/errors';
import { durationFlag } from './duration-flag.js';
import { envFlagsToMap, parseEnvFlag } from './env-flag.js';
import { intFlag } from './int-flag.js';

const usage = (fn: () => unknown, pattern: RegExp): void =>
  assert.throws(fn, (e: unknown) => isMonocoreError(e, 'MC_USAGE') && pattern.test(e.message));

test('durations: seconds, s/m/h/d suffixes, bounds named in the error', () => {
  assert.equal(durationFlag('--timeout', '600', 1, 7 * 86400), 600);
  assert.equal(durationFlag('--timeout', '90s', 1, 7 * 86400), 90);
  assert.equal(durationFlag('--timeout', '10m', 1, 7 * 86400), 600);
  assert.equal(durationFlag('--timeout', '2h', 1, 7 * 86400), 7200);
  assert.equal(durationFlag('--timeout', '7d', 1, 7 * 86400), 7 * 86400);
  usage(() => durationFlag('--timeout', '8d', 1, 7 * 86400), /^--timeout: "8d" must be a duration from 1s to 604800s/);
  usage(() => durationFlag('--idle-timeout', '0', 1, 60), /^--idle-timeout: "0"/);
  usage(() => durationFlag('--timeout', '1.5h', 1, 86400), /--timeout: "1.5h"/);
});

test('-e flags: K=V, K copied from here (or dropped), later wins, bad names refused', () => {
  assert.deepEqual(envFlagsToMap(['A=1', 'B', 'C', 'A=2', 'D=x=y'], { B: 'from-here' }), { A: '2', B: 'from-here', D: 'x=y' });
  assert.equal(parseEnvFlag('EMPTY='), 'EMPTY=');
  usage(() => parseEnvFlag('=v'), /^-e "=v": expected KEY=value/);
  usage(() => intFlag('--cpus', '0', 1, 64), /^--cpus: "0" must be an integer in 1..64$/);
});
