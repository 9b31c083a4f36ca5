import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ENTRY_NAME_PATTERN, checkName } from './names.js';

test('service/group names are DNS labels', () => {
  for (const ok of ['a', 'web', 'web-1', '0', 'a'.repeat(63), 'sh-counter']) assert.equal(checkName(ok), undefined, ok);
  const cases: [string, string][] = [
    ['', 'name must not be empty'],
    ['a'.repeat(64), 'name is 64 characters long; the limit is 63'],
    ['Web', 'name "Web" must be lowercase (allowed: a-z, 0-9 and "-")'],
    ['../x', 'name "../x" must not contain path separators or ".."'],
    ['a/b', 'name "a/b" must not contain path separators or ".."'],
    ['..', 'name ".." must not contain path separators or ".."'],
    ['-a', 'name "-a" may only use a-z, 0-9 and "-", and must start and end with a letter or digit'],
    ['a-', 'name "a-" may only use a-z, 0-9 and "-", and must start and end with a letter or digit'],
    ['a_b', 'name "a_b" may only use a-z, 0-9 and "-", and must start and end with a letter or digit'],
    ['a.b', 'name "a.b" may only use a-z, 0-9 and "-", and must start and end with a letter or digit'],
    ['a b', 'name "a b" may only use a-z, 0-9 and "-", and must start and end with a letter or digit'],
  ];
  for (const [name, why] of cases) assert.equal(checkName(name), why, name);
});

test('group volume/env names also allow "_"', () => {
  assert.equal(checkName('app_env', ENTRY_NAME_PATTERN), undefined);
  assert.equal(
    checkName('_x', ENTRY_NAME_PATTERN),
    'name "_x" may only use a-z, 0-9, "-" and "_", and must start and end with a letter or digit',
  );
});
