/**
 * Maps a depends_on DAG onto BullMQ flows, whose jobs have exactly ONE parent
 * (docs/ORCHESTRATION.md, "One parent per job": a shared child silently
 * deadlocks; unfolding duplicates exponentially). Every edge still becomes a
 * parent→child link:
 *
 * - walking from the nodes nobody points at, the first parent to reach a node
 *   gets the node's real job as its child;
 * - every later parent gets a small `await` gate child instead, which completes
 *   once that node reached its goal (started / stopped) and fails when it never
 *   can.
 *
 * So the flow holds one job per node plus one gate per extra edge — O(V+E) —
 * each node's job runs exactly once, and the Bull Board tree shows the graph.
 * For `up` the edges are service → its dependencies (dependencies finish
 * first); for `down` they are service → its dependents.
 */
export interface DagShape {
  /** node -> the parent that owns its real job (absent for top nodes). */
  owner: Map<string, string>;
  /** Top nodes (children of the request root), in input order. */
  tops: string[];
  /** parent -> real children, in edge order. */
  children: Map<string, string[]>;
  /** parent -> targets it awaits through gates. */
  gates: Map<string, string[]>;
  /** target -> parents awaiting it through gates. */
  awaitedBy: Map<string, string[]>;
}

/**
 * Decide the tree: `nodes` in a stable order, `edgesOf(n)` the nodes n must wait for.
 * Iterative DFS (deep chains must not overflow the stack).
 */
export function shapeDag(nodes: readonly string[], edgesOf: (n: string) => readonly string[]): DagShape {
  const pointedAt = new Set<string>();
  for (const n of nodes) for (const c of edgesOf(n)) pointedAt.add(c);
  const tops = nodes.filter((n) => !pointedAt.has(n));
  const owner = new Map<string, string>();
  const claimed = new Set<string>(tops);
  const children = new Map<string, string[]>();
  const gates = new Map<string, string[]>();
  const awaitedBy = new Map<string, string[]>();
  const stack = [...tops].reverse();
  while (stack.length > 0) {
    const n = stack.pop() as string;
    const real: string[] = [];
    const gated: string[] = [];
    for (const c of edgesOf(n)) {
      if (!claimed.has(c)) {
        claimed.add(c);
        owner.set(c, n);
        real.push(c);
      } else {
        gated.push(c);
        const list = awaitedBy.get(c) ?? [];
        list.push(n);
        awaitedBy.set(c, list);
      }
    }
    children.set(n, real);
    gates.set(n, gated);
    for (let i = real.length - 1; i >= 0; i--) stack.push(real[i]!);
  }
  if (claimed.size !== nodes.length) {
    const missing = nodes.filter((n) => !claimed.has(n));
    // Only possible with a cycle, which validation rejects before we get here.
    throw new Error(`flow-builder: nodes unreachable from the DAG's tops (cycle?): ${missing.join(', ')}`);
  }
  return { owner, tops, children, gates, awaitedBy };
}

export interface FlowNode {
  name: string;
  queueName: string;
  data: unknown;
  opts?: Record<string, unknown>;
  children?: FlowNode[];
}

/**
 * Build the FlowProducer tree from a shape. `job(n, kids)` makes node n's real
 * job with the given children (real jobs + gates + whatever else it adds, e.g.
 * its pull); `gate(parent, target)` makes one await gate.
 */
export function buildFlowTree(
  shape: DagShape,
  job: (n: string, kids: FlowNode[]) => FlowNode,
  gate: (parent: string, target: string) => FlowNode,
): FlowNode[] {
  // Post-order without recursion: children are built before their parent.
  const built = new Map<string, FlowNode>();
  const order: string[] = [];
  const stack: Array<[string, boolean]> = [...shape.tops].reverse().map((n) => [n, false] as [string, boolean]);
  while (stack.length > 0) {
    const [n, expanded] = stack.pop()!;
    if (expanded) {
      order.push(n);
      continue;
    }
    stack.push([n, true]);
    const kids = shape.children.get(n) ?? [];
    for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i]!, false]);
  }
  for (const n of order) {
    const kids: FlowNode[] = (shape.children.get(n) ?? []).map((c) => built.get(c)!);
    for (const t of shape.gates.get(n) ?? []) kids.push(gate(n, t));
    built.set(n, job(n, kids));
  }
  return shape.tops.map((t) => built.get(t)!);
}

/** Count of jobs in a tree (for tests and the O(V+E) check). */
export function countFlowJobs(nodes: readonly FlowNode[]): number {
  let n = 0;
  const stack = [...nodes];
  while (stack.length > 0) {
    const x = stack.pop()!;
    n++;
    if (x.children) stack.push(...x.children);
  }
  return n;
}
