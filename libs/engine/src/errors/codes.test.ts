import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from './codes.js';

// Like Fastify's errors test: every code must be documented in docs/ERRORS.md.
test('every error code is documented in docs/ERRORS.md', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../../../docs/ERRORS.md', import.meta.url)), 'utf8');
  const missing = Object.keys(ErrorCodes).filter((c) => !doc.includes(`\`${c}\``));
  assert.deepEqual(missing, [], `undocumented error codes: ${missing.join(', ')}`);
});
