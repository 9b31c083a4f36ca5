import { performance } from 'node:perf_hooks';

/**
 * How long CPU-heavy synchronous work (a layer's small files written with synchronous
 * syscalls, the erofs writer's walk of the finished tree) may run before it lets the
 * event loop turn. The worker unpacks images in the process that renews its leases:
 * on a loaded host (load ~10 on 2 cores) the unpack held the event loop for 0.85-2.4 s
 * at a time, long enough for the worker's own fence to kill a live VM
 * (docs/ORCHESTRATION.md "A busy host"). At most 100 turns a second cost the unpack
 * nothing measurable (bench/RESULTS.md "liveness under load").
 */
export const TURN_BUDGET_MS = 10;

/**
 * Lets a long synchronous loop give the event loop a turn (timers, socket reads, I/O
 * callbacks) once it has run TURN_BUDGET_MS without one:
 *
 *   const budget = new TurnBudget();
 *   for (const x of many) {
 *     const turn = budget.turn();
 *     if (turn) await turn;
 *     work(x);
 *   }
 *
 * `turn()` allocates nothing while the budget lasts, so it can be called per item.
 */
export class TurnBudget {
  #since = performance.now();

  /** Whether the caller has run TURN_BUDGET_MS since the last turn. */
  spent(): boolean {
    return performance.now() - this.#since >= TURN_BUDGET_MS;
  }

  /**
   * A promise that resolves after one turn of the event loop when the budget is spent
   * (setImmediate: the poll phase, i.e. pending socket reads, runs first), else undefined.
   */
  turn(): Promise<void> | undefined {
    return this.spent() ? this.yield() : undefined;
  }

  /** One turn of the event loop, then a fresh budget. */
  async yield(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.restart();
  }

  /** The event loop turned by other means (e.g. the stream's next chunk): a fresh budget. */
  restart(): void {
    this.#since = performance.now();
  }
}
