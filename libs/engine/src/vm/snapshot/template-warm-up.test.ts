import assert from 'node:assert/strict';
import { test } from 'node:test';
import { warmUpPrograms } from './template-warm-up.js';

test('warmUpPrograms: the command of the VM that saves the template, and the shell, once each', () => {
  assert.deepEqual(warmUpPrograms({ command: 'python3' }), ['python3', 'sh']);
  assert.deepEqual(warmUpPrograms({ command: 'sh' }), ['sh']);
  assert.deepEqual(warmUpPrograms({ command: '', sandbox: true }), ['sh']);
});
