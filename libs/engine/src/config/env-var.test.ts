import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEnvVar } from './env-var.js';

test('parseEnvVar splits at the first "=", value may be empty or contain "="', () => {
  assert.deepEqual(parseEnvVar('KEY=value'), { ok: true, value: { key: 'KEY', value: 'value' } });
  assert.deepEqual(parseEnvVar('_k1='), { ok: true, value: { key: '_k1', value: '' } });
  assert.deepEqual(parseEnvVar('URL=a=b=c'), { ok: true, value: { key: 'URL', value: 'a=b=c' } });
});

test('parseEnvVar rejects a missing "=" and invalid keys', () => {
  const cases: [string, string][] = [
    ['KEY', 'env "KEY" must be KEY=value'],
    ['=v', 'env "=v": key "" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['1A=v', 'env "1A=v": key "1A" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['A-B=v', 'env "A-B=v": key "A-B" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['A B=v', 'env "A B=v": key "A B" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['A=\0', 'env "A": value must not contain NUL bytes'],
  ];
  for (const [input, error] of cases) assert.deepEqual(parseEnvVar(input), { ok: false, error }, input);
});
