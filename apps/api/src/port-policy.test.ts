import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMonocoreError } from '@monocore/engine';
import { PortPolicy } from './port-policy.js';

test('PortPolicy: unprivileged ports by default, MONOCORE_API_PORTS ranges otherwise, each refused field named', () => {
  const def = PortPolicy.fromEnv(undefined);
  assert.equal(def.allows(1023), false);
  assert.equal(def.allows(1024), true);
  assert.equal(def.allows(65535), true);

  const narrow = PortPolicy.fromEnv('8000-9000, 3000');
  assert.deepEqual([7999, 8000, 9000, 9001, 3000, 443].map((p) => narrow.allows(p)), [false, true, true, false, true, false]);
  let caught: unknown;
  try {
    narrow.check({ service: [{ name: 'a', port: '8080:80' }, { name: 'b', port: '22' }, { name: 'c' }, { name: 'd', port: '9001:9001' }] });
  } catch (err) {
    caught = err;
  }
  assert.ok(isMonocoreError(caught, 'MC_API_PORT_NOT_ALLOWED'));
  assert.deepEqual((caught.details.issues as Array<{ path: string }>).map((i) => i.path), ['service[1].port', 'service[3].port']);
  assert.match(caught.message, /allowed: 8000-9000,3000/);

  assert.throws(() => PortPolicy.fromEnv('9000-8000'), /MONOCORE_API_PORTS: "9000-8000"/);
  assert.throws(() => PortPolicy.fromEnv('0'), /MONOCORE_API_PORTS: "0"/);
});
