/**
 * What a VM start allocated, undone in reverse order: every allocation pushes
 * its undo right after it succeeds, so a failure at any later step (and the
 * VM's end) runs one list instead of a hand-written copy per exit path.
 */
export class CleanupStack {
  private readonly undos: Array<() => unknown> = [];

  push(undo: () => unknown): void {
    this.undos.push(undo);
  }

  /**
   * Runs every undo, last pushed first, each once. An undo that throws or
   * rejects does not stop the ones below it: what it leaked is lost either
   * way, and the rest must still be released.
   */
  async runAll(): Promise<void> {
    for (let undo = this.undos.pop(); undo; undo = this.undos.pop()) {
      try {
        await undo();
      } catch {
        // keep going (see above)
      }
    }
  }
}
