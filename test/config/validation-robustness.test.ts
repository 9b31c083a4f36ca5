// Validation must answer every input with a list of issues, never crash: random
// mutations of a valid config (wrong types, deleted keys, odd strings, huge lists)
// may only produce a valid config or MC_CONFIG_INVALID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'smol-toml';
import { checkConfig, checkConfigToml, isMonocoreError, planServices, resolveServices, validateConfig } from '@monocore/engine';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const fullToml = readFileSync(`${repo}test/fixtures/config/full.toml`, 'utf8');
const base = parse(fullToml) as Record<string, unknown>;

/** Small deterministic PRNG (mulberry32) so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const oddValues: unknown[] = [
  null, undefined, 0, -1, 1.5, Number.POSITIVE_INFINITY, Number.NaN, '', ' ', '..', '/', '../x', 'a:b:c', 'KEY', '=', 'x'.repeat(5000),
  [], [null], [[]], {}, { name: 1 }, true, new Date(0), ['db', 'db'], ['web'], 'web', 'app', 'shared', '/srv/monocore-shared',
];

function mutate(value: unknown, rand: () => number, depth = 0): unknown {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  if (depth > 0 && rand() < 0.08) return pick(oddValues);
  if (Array.isArray(value)) {
    const out = value.map((v) => mutate(v, rand, depth + 1));
    if (rand() < 0.1) out.push(pick(out.length > 0 ? out : oddValues));
    if (rand() < 0.05) out.splice(Math.floor(rand() * out.length), 1);
    return out;
  }
  if (typeof value === 'object' && value !== null && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (rand() < 0.05) continue; // drop a key
      out[rand() < 0.02 ? `${k}x` : k] = mutate(v, rand, depth + 1);
    }
    return out;
  }
  return value;
}

test('2000 random mutations of a valid config: valid or MC_CONFIG_INVALID, never a crash', () => {
  const rand = rng(20261128);
  let invalid = 0;
  for (let i = 0; i < 2000; i++) {
    const input = mutate(base, rand);
    const result = checkConfig(input);
    if (result.ok) {
      // Whatever passes must also resolve and plan without surprises.
      resolveServices(result.config);
      planServices(result.config);
    } else {
      invalid++;
      assert.ok(result.issues.length > 0);
      for (const issue of result.issues) {
        assert.equal(typeof issue.path, 'string');
        assert.ok(issue.message.length > 0, `empty message at ${issue.path}`);
      }
    }
  }
  assert.ok(invalid > 400, `mutations should mostly break the config (got ${invalid} invalid)`);
});

test('random byte edits of the TOML text: issues with lines, never a crash', () => {
  const rand = rng(7);
  const alphabet = ['[', ']', '"', "'", '=', '\n', ',', '{', '}', '#', 'a', '1', ' ', '.', '\\'];
  for (let i = 0; i < 1000; i++) {
    const chars = [...fullToml];
    for (let k = 0; k < 3; k++) chars.splice(Math.floor(rand() * chars.length), 1, alphabet[Math.floor(rand() * alphabet.length)] ?? '');
    const result = checkConfigToml(chars.join(''));
    if (!result.ok) for (const issue of result.issues) if (issue.line !== undefined) assert.ok(issue.line >= 1 && (issue.column ?? 1) >= 1);
  }
});

test('oversized bodies are refused by the schema without expensive cross-field work', () => {
  const service = Array.from({ length: 50_000 }, (_, i) => ({ name: `s${i}`, depends_on: i > 0 ? [`s${i - 1}`] : [] }));
  const result = checkConfig({ service });
  assert.equal(result.ok, false);
  assert.deepEqual(!result.ok && result.issues, [{ path: 'service', message: 'must have at most 1024 entries' }]);
  assert.throws(() => validateConfig({ service }), (err: unknown) => isMonocoreError(err, 'MC_CONFIG_INVALID'));
});

test('values JSON cannot carry (bigint, symbol, function) from library callers are issues, not crashes', () => {
  const result = checkConfig({
    service: [{ name: 'a', ram: 10n, cpus: Symbol('x'), restart: 5n, args: [() => 1], max_restarts: 'x'.repeat(100) }],
  });
  assert.equal(result.ok, false);
  assert.deepEqual(!result.ok && result.issues.map((i) => `${i.path}: ${i.message}`), [
    'service[0].args[0]: expected string, got function',
    'service[0].cpus: must be an integer in 1..64, got symbol',
    'service[0].ram: must be an integer in 64..1048576, got 10',
    'service[0].restart: must be one of "on-failure", "always", "no", got 5',
    `service[0].max_restarts: must be an integer in 0..100, got "${'x'.repeat(64)}…"`,
  ]);
});
