import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEnvVar, tryParseEnvVar } from './env-var.js';

test('tryParseEnvVar splits at the first "=", value may be empty or contain "="', () => {
  assert.deepEqual(tryParseEnvVar('KEY=value'), { ok: true, value: { key: 'KEY', value: 'value' } });
  assert.deepEqual(tryParseEnvVar('_k1='), { ok: true, value: { key: '_k1', value: '' } });
  assert.deepEqual(tryParseEnvVar('URL=a=b=c'), { ok: true, value: { key: 'URL', value: 'a=b=c' } });
});

test('tryParseEnvVar rejects a missing "=" and invalid keys', () => {
  const cases: [string, string][] = [
    ['KEY', 'env "KEY" must be KEY=value'],
    ['=v', 'env "=v": key "" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['1A=v', 'env "1A=v": key "1A" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['A-B=v', 'env "A-B=v": key "A-B" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['A B=v', 'env "A B=v": key "A B" must match [A-Za-z_][A-Za-z0-9_]*'],
    ['A=\0', 'env "A": value must not contain NUL bytes'],
  ];
  for (const [input, error] of cases) assert.deepEqual(tryParseEnvVar(input), { ok: false, error }, input);
});

test('parseEnvVar returns the entry or throws MC_CONFIG_INVALID with the reason', () => {
  assert.deepEqual(parseEnvVar('A=b'), { key: 'A', value: 'b' });
  assert.throws(() => parseEnvVar('A'), { code: 'MC_CONFIG_INVALID', message: 'env "A" must be KEY=value' });
});
