import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildFlowTree, countFlowJobs, shapeDag, type FlowNode } from './flow-builder.js';

const job = (n: string, kids: FlowNode[]): FlowNode => ({ name: 'start', queueName: 'q', data: { n }, children: kids });
const gate = (p: string, t: string): FlowNode => ({ name: 'await', queueName: 'gate', data: { p, t } });

function realJobs(nodes: FlowNode[]): string[] {
  const out: string[] = [];
  const stack = [...nodes];
  while (stack.length) {
    const x = stack.pop()!;
    if (x.name === 'start') out.push((x.data as { n: string }).n);
    stack.push(...(x.children ?? []));
  }
  return out.sort();
}

test('a diamond: the shared dependency has one real job and one gate', () => {
  const deps: Record<string, string[]> = { base: [], left: ['base'], right: ['base'], top: ['left', 'right'] };
  const shape = shapeDag(['base', 'left', 'right', 'top'], (n) => deps[n] ?? []);
  assert.deepEqual(shape.tops, ['top']);
  assert.equal(shape.owner.get('base'), 'left');
  assert.deepEqual(shape.gates.get('right'), ['base']);
  assert.deepEqual(shape.awaitedBy.get('base'), ['right']);
  const tree = buildFlowTree(shape, job, gate);
  assert.deepEqual(realJobs(tree), ['base', 'left', 'right', 'top']);
  assert.equal(countFlowJobs(tree), 4 + 1); // V real jobs + (E - V + tops) gates: 4 edges, 3 owned
});

test('the flow stays O(V+E) on a layered DAG where unfolding would explode', () => {
  // 20 layers of 3, every node depends on all 3 of the layer below: unfolding = 3^20 paths.
  const deps: Record<string, string[]> = {};
  const names: string[] = [];
  for (let l = 0; l < 20; l++) {
    for (let i = 0; i < 3; i++) {
      const n = `l${l}n${i}`;
      names.push(n);
      deps[n] = l === 0 ? [] : [0, 1, 2].map((j) => `l${l - 1}n${j}`);
    }
  }
  const edges = Object.values(deps).reduce((a, d) => a + d.length, 0);
  const tree = buildFlowTree(shapeDag(names, (n) => deps[n] ?? []), job, gate);
  const jobs = countFlowJobs(tree);
  assert.deepEqual(realJobs(tree), [...names].sort(), 'every service exactly one real job');
  // One real job per node, one gate per edge that did not become the ownership edge.
  assert.equal(jobs, names.length + edges - (names.length - 3));
  assert.ok(jobs <= names.length + edges);
});

test('a 32-deep chain builds without recursion limits and keeps one job per service', () => {
  const names = Array.from({ length: 32 }, (_, i) => `s${i}`);
  const tree = buildFlowTree(shapeDag(names, (n) => (n === 's0' ? [] : [`s${Number(n.slice(1)) - 1}`])), job, gate);
  assert.equal(countFlowJobs(tree), 32);
  assert.equal((tree[0]!.data as { n: string }).n, 's31');
});
