import type { z } from 'zod';
import type { ExecExitLineSchema } from '@monocore/api-schemas';

/** How a command ended: its exit code (128+N for signal N), the signal, whether its timeout killed it. */
export type ExecExit = z.infer<typeof ExecExitLineSchema>;

/** A chunk of output, in the order the command wrote it. `data` is text, or bytes with `binary: true`. */
export interface ExecChunk<D extends string | Buffer = string> {
  stream: 'stdout' | 'stderr';
  data: D;
}

/** What an ExecStream yields: the output chunks, then exactly one ExecExit. */
export type ExecEvent<D extends string | Buffer = string> = ExecChunk<D> | ExecExit;

export const isExit = <D extends string | Buffer>(e: ExecEvent<D>): e is ExecExit => 'exit_code' in e;

/** Everything a streamed command wrote, collected, with how it ended. */
export interface CollectedExec<D extends string | Buffer = string> extends ExecExit {
  stdout: D;
  stderr: D;
}

/**
 * A running command's output as an async iterator: `{stream, data}` chunks in
 * order, ending with `{exit_code, signal, timed_out, duration_ms}`. A failure
 * after the output started (the sandbox was lost, …) is thrown from the
 * iteration as a MonocoreApiError. Reading slowly slows the command down
 * (back-pressure reaches the process in the guest); `abort()` kills it.
 *
 * ```ts
 * for await (const e of sandbox.execStream(['make', 'test'])) {
 *   if ('exit_code' in e) console.log('exit', e.exit_code);
 *   else process[e.stream].write(e.data);
 * }
 * ```
 */
export class ExecStream<D extends string | Buffer = string> implements AsyncIterable<ExecEvent<D>> {
  private consumed = false;
  private exitValue: ExecExit | undefined;

  constructor(
    private readonly events: AsyncIterable<ExecEvent<D>>,
    private readonly abortController: AbortController,
    private readonly binary: boolean,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<ExecEvent<D>> {
    if (this.consumed) throw new Error('an ExecStream can be read once');
    this.consumed = true;
    for await (const e of this.events) {
      if (isExit(e)) this.exitValue = e;
      yield e;
    }
  }

  /** The exit, once the iteration has reached it. */
  get exit(): ExecExit | undefined {
    return this.exitValue;
  }

  /** Reads the whole output: stdout and stderr joined, and the exit. */
  async collect(): Promise<CollectedExec<D>> {
    const parts: Record<'stdout' | 'stderr', Array<string | Buffer>> = { stdout: [], stderr: [] };
    let exit: ExecExit | undefined;
    for await (const e of this) {
      if (isExit(e)) exit = e;
      else parts[e.stream].push(e.data);
    }
    if (!exit) throw new Error('the exec stream ended without its exit');
    const join = (xs: Array<string | Buffer>): D =>
      (this.binary ? Buffer.concat(xs as Buffer[]) : (xs as string[]).join('')) as D;
    return { ...exit, stdout: join(parts.stdout), stderr: join(parts.stderr) };
  }

  /** Stops reading and kills the command (the API kills its process tree when the request goes away). */
  abort(): void {
    this.abortController.abort();
  }
}
