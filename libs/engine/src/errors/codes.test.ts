import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from './codes.js';

const doc = readFileSync(fileURLToPath(new URL('../../../../docs/ERRORS.md', import.meta.url)), 'utf8');

/** The table rows of docs/ERRORS.md: | `MC_X` | 404 | no | meaning | */
const rows = [...doc.matchAll(/^\| `(MC_[A-Z0-9_]+)` \| (\d{3}) \| (yes|no) \|/gm)].map((m) => ({
  code: m[1]!,
  status: Number(m[2]),
  retryable: m[3] === 'yes',
}));

// Like Fastify's errors test: every code must be documented in docs/ERRORS.md.
test('every error code is documented in docs/ERRORS.md', () => {
  const documented = new Set(rows.map((r) => r.code));
  const missing = Object.keys(ErrorCodes).filter((c) => !documented.has(c));
  assert.deepEqual(missing, [], `undocumented error codes (each needs a table row): ${missing.join(', ')}`);
});

test('docs/ERRORS.md documents no code that is gone, and each row has its code\'s HTTP status and retryability', () => {
  const known = ErrorCodes as Record<string, { status: number; retryable: boolean }>;
  // Any MC_ code mentioned anywhere in the document, not only in the tables (`MC_API_*` names a family).
  const mentioned = [...new Set([...doc.matchAll(/\bMC_[A-Z0-9_]+/g)].map((m) => m[0]))];
  const gone = mentioned.filter((c) => !(c in known) && !c.endsWith('_'));
  assert.deepEqual(gone, [], `docs/ERRORS.md names codes that libs/engine/src/errors/codes.ts no longer has: ${gone.join(', ')}`);
  const wrong = rows
    .filter((r) => known[r.code] && (known[r.code]!.status !== r.status || known[r.code]!.retryable !== r.retryable))
    .map((r) => `${r.code}: documented ${r.status}/${r.retryable ? 'yes' : 'no'}, code says ${known[r.code]!.status}/${known[r.code]!.retryable ? 'yes' : 'no'}`);
  assert.deepEqual(wrong, [], wrong.join('\n'));
  const twice = rows.map((r) => r.code).filter((c, i, all) => all.indexOf(c) !== i);
  assert.deepEqual(twice, [], `documented twice: ${twice.join(', ')}`);
});
