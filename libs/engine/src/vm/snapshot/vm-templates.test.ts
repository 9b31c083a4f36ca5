import assert from 'node:assert/strict';
import { test } from 'node:test';
import { neutralGuestSpec } from './vm-templates.js';

test('neutralGuestSpec: whether a run discards its disk is not part of the template (run and sandboxes share one)', () => {
  const guest = { argv: ['true'], env: [], workdir: '/', hostname: 'h', disk: true, volumes: [], nics: [], hosts: [] };
  assert.deepEqual(neutralGuestSpec({ ...guest, discardDisk: true }), neutralGuestSpec(guest));
});
