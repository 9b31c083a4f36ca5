import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig, type MonocoreConfig } from '../config/index.js';
import { isMonocoreError } from '../errors/index.js';
import { planServices } from './plan-services.js';

type Def = { name: string; depends_on?: string[]; group?: string };

function config(services: Def[], groups: string[] = []): MonocoreConfig {
  return validateConfig({ service: services, group: groups.map((name) => ({ name })) });
}

/** Every service appears after all of its dependencies. */
function assertTopological(cfg: MonocoreConfig, order: string[]): void {
  const pos = new Map(order.map((n, i) => [n, i]));
  for (const s of cfg.service) {
    if (!pos.has(s.name)) continue;
    for (const d of s.depends_on) assert.ok((pos.get(d) ?? Infinity) < (pos.get(s.name) ?? -1), `${d} before ${s.name}`);
  }
}

test('diamond: a ← b, a ← c, {b, c} ← d', () => {
  const cfg = config([
    { name: 'd', depends_on: ['b', 'c'] },
    { name: 'c', depends_on: ['a'] },
    { name: 'b', depends_on: ['a'] },
    { name: 'a' },
  ]);
  const plan = planServices(cfg);
  assert.deepEqual(plan.levels, [['a'], ['c', 'b'], ['d']], 'ties keep config order');
  assert.deepEqual(plan.order, ['a', 'c', 'b', 'd']);
  assert.deepEqual(plan.downOrder, ['d', 'b', 'c', 'a']);
  assert.deepEqual(plan.selected, ['d', 'c', 'b', 'a']);
  assertTopological(cfg, plan.order);
});

test('independent services all start in level 0, in config order', () => {
  const plan = planServices(config([{ name: 'x' }, { name: 'y' }, { name: 'z' }]));
  assert.deepEqual(plan.levels, [['x', 'y', 'z']]);
});

test('a chain of 32 services plans into 32 levels; 33 is rejected by validation', () => {
  const chain = (n: number): Def[] =>
    Array.from({ length: n }, (_, i) => ({ name: `s${i + 1}`, ...(i > 0 ? { depends_on: [`s${i}`] } : {}) }));
  const cfg = config(chain(32).reverse());
  const plan = planServices(cfg);
  assert.equal(plan.levels.length, 32);
  assert.deepEqual(plan.order, Array.from({ length: 32 }, (_, i) => `s${i + 1}`));
  assert.deepEqual(plan.downOrder[0], 's32');
  assert.throws(() => config(chain(33)), (err: unknown) => {
    assert.ok(isMonocoreError(err, 'MC_CONFIG_INVALID'));
    const issues = err.details.issues as { path: string; message: string }[];
    assert.equal(issues.length, 1);
    assert.equal(issues[0]?.path, 'service[32].depends_on');
    assert.match(issues[0]?.message ?? '', /^dependency chain of 33 services exceeds the limit of 32: s33 -> s32 -> .* -> s1$/);
    return true;
  });
});

test('a cycle never reaches the planner: validation names it; an unvalidated one is refused, not looped', () => {
  assert.throws(
    () => config([{ name: 'a', depends_on: ['c'] }, { name: 'b', depends_on: ['a'] }, { name: 'c', depends_on: ['b'] }]),
    (err: unknown) =>
      isMonocoreError(err, 'MC_CONFIG_INVALID') &&
      (err.details.issues as { message: string }[]).some((i) => i.message === 'dependency cycle: a -> c -> b -> a'),
  );
  const raw = config([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
  raw.service[0]?.depends_on.push('b');
  raw.service[1]?.depends_on.push('a');
  assert.throws(() => planServices(raw), { code: 'MC_CONFIG_INVALID', message: 'dependency cycle among: a, b' });
});

test('group subset includes the dependencies it needs from other groups, and nothing else', () => {
  const cfg = config(
    [
      { name: 'db', group: 'data' },
      { name: 'cache', group: 'data' },
      { name: 'api', group: 'app', depends_on: ['db'] },
      { name: 'web', group: 'app', depends_on: ['api'] },
      { name: 'batch', group: 'jobs', depends_on: ['cache'] },
    ],
    ['data', 'app', 'jobs'],
  );
  const app = planServices(cfg, { group: 'app' });
  assert.deepEqual(app.selected, ['db', 'api', 'web']);
  assert.deepEqual(app.levels, [['db'], ['api'], ['web']]);
  assert.deepEqual(app.downOrder, ['web', 'api', 'db']);
  const data = planServices(cfg, { group: 'data' });
  assert.deepEqual(data.selected, ['db', 'cache']);
  assert.deepEqual(data.levels, [['db', 'cache']]);
  assert.throws(() => planServices(cfg, { group: 'nope' }), { code: 'MC_PLAN_UNKNOWN_SELECTION', message: 'unknown group "nope"' });
});

test('service subset pulls in its transitive dependencies; group + services is the union', () => {
  const cfg = config(
    [
      { name: 'a' },
      { name: 'b', depends_on: ['a'] },
      { name: 'c', depends_on: ['b'] },
      { name: 'd' },
      { name: 'e', group: 'g', depends_on: ['d'] },
    ],
    ['g'],
  );
  assert.deepEqual(planServices(cfg, { services: ['c'] }).order, ['a', 'b', 'c']);
  assert.deepEqual(planServices(cfg, { services: ['b', 'd'] }).selected, ['a', 'b', 'd']);
  assert.deepEqual(planServices(cfg, { services: ['a'], group: 'g' }).levels, [['a', 'd'], ['e']]);
  assert.deepEqual(planServices(cfg, { services: [] }).order, [], 'an empty selection plans nothing');
  assert.throws(() => planServices(cfg, { services: ['zz'] }), { code: 'MC_PLAN_UNKNOWN_SELECTION', message: 'unknown service "zz"' });
});

test('plans are deterministic', () => {
  const defs: Def[] = Array.from({ length: 60 }, (_, i) => ({
    name: `n${i}`,
    depends_on: i > 0 ? [`n${(i * 7) % i}`, `n${Math.floor(i / 2)}`].filter((d, j, all) => all.indexOf(d) === j) : [],
  }));
  const cfg = config(defs);
  const first = planServices(cfg);
  assertTopological(cfg, first.order);
  for (let k = 0; k < 5; k++) assert.deepEqual(planServices(cfg), first);
  for (const [lvl, names] of first.levels.entries()) {
    for (const n of names) {
      const deps = cfg.service.find((s) => s.name === n)?.depends_on ?? [];
      const depLevels = deps.map((d) => first.levels.findIndex((l) => l.includes(d)));
      assert.equal(lvl, depLevels.length === 0 ? 0 : Math.max(...depLevels) + 1, `${n} sits one level above its deepest dependency`);
    }
  }
});

test('closure "dependents" takes along what depends on the selection (for down); "none" takes exactly it', () => {
  const cfg = config(
    [
      { name: 'db', group: 'data' },
      { name: 'api', group: 'app', depends_on: ['db'] },
      { name: 'web', group: 'app', depends_on: ['api'] },
      { name: 'report', depends_on: ['db'] },
      { name: 'other' },
    ],
    ['data', 'app'],
  );
  const down = planServices(cfg, { group: 'data', closure: 'dependents' });
  assert.deepEqual(down.selected, ['db', 'api', 'web', 'report']);
  assert.deepEqual(down.downOrder, ['web', 'report', 'api', 'db'], 'dependents stop first');
  assert.deepEqual(planServices(cfg, { services: ['api'], closure: 'dependents' }).downOrder, ['web', 'api']);
  const exact = planServices(cfg, { group: 'app', closure: 'none' });
  assert.deepEqual(exact.selected, ['api', 'web']);
  assert.deepEqual(exact.levels, [['api'], ['web']], 'db is outside the selection and does not hold api back');
});
