import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { ExecResultSchema, ExecStreamLineSchema, NDJSON, type ExecRequest, type ExecResult } from '@monocore/api-schemas';
import { ExecSession, type SessionOptions } from './exec-session.js';
import { ExecStream, type ExecEvent } from './exec-stream.js';
import { GuestFiles } from './guest-files.js';
import { closeBody, parseAnswer, type HttpTransport } from './http-transport.js';
import { MonocoreApiError } from './monocore-api-error.js';
import { readNdjson } from './ndjson-reader.js';

/** A command: program and arguments (no shell), or one string run by `sh -c`. */
export type Command = string | readonly string[];

/** The per-exec fields of ExecRequest (snake_case, as the API takes them). */
type ExecFields = Pick<ExecRequest, 'env' | 'cwd' | 'user' | 'timeout_s'>;

export interface ExecOptions extends ExecFields {
  /** Written to the command's stdin, then closed (default: stdin is /dev/null). */
  stdin?: string | Uint8Array;
  /** How stdout and stderr come back: UTF-8 text (default) or base64 (binary-safe). */
  encoding?: 'utf8' | 'base64';
  /** Aborting kills the command. */
  signal?: AbortSignal;
}

export interface ExecStreamOptions extends ExecFields {
  /**
   * The command's stdin: text or bytes (sent whole, then closed), or a stream
   * read as the command runs (sent over the WebSocket route, closed at its end).
   */
  stdin?: string | Uint8Array | Readable | AsyncIterable<Uint8Array | string>;
  /** Chunks as Buffers (binary-safe) instead of text. */
  binary?: boolean;
  /** Aborting kills the command. */
  signal?: AbortSignal;
}

export const argv = (cmd: Command): string[] => (typeof cmd === 'string' ? ['sh', '-c', cmd] : [...cmd]);

/**
 * What sandboxes and services share: running commands (buffered, streamed,
 * interactive) and files. `base` is `/sandboxes/:id` or `/services/:name`.
 */
export abstract class ExecTarget {
  readonly files: GuestFiles;

  protected constructor(
    protected readonly http: HttpTransport,
    protected readonly base: string,
  ) {
    this.files = new GuestFiles(http, base);
  }

  /** An ordinary request that throws the API's error for this target (explains a failed WebSocket upgrade). */
  protected abstract probe(): Promise<void>;

  /**
   * Runs a command and waits for it: `{exit_code, stdout, stderr, duration_ms,
   * timed_out, signal, truncated}`. A non-zero exit is a result, not an error;
   * errors are the API's (unknown or stopped sandbox, …) as MonocoreApiError.
   * Output beyond 16 MiB per stream is dropped (`truncated`): stream it instead.
   */
  async exec(cmd: Command, options: ExecOptions = {}): Promise<ExecResult> {
    const { stdin, encoding = 'utf8', signal, ...fields } = options;
    // Bytes on stdin travel as base64, and then so does the output: turn it back into text if text was asked for.
    const wire = stdin instanceof Uint8Array || encoding === 'base64' ? 'base64' : 'utf8';
    const body: ExecRequest = {
      cmd: argv(cmd),
      ...fields,
      encoding: wire,
      ...(stdin !== undefined ? { stdin: wire === 'base64' ? Buffer.from(stdin).toString('base64') : (stdin as string) } : {}),
    };
    const result = await this.http.json(ExecResultSchema, 'POST', `${this.base}/exec`, { body: { json: body }, ...(signal ? { signal } : {}) });
    if (wire === 'base64' && encoding === 'utf8') {
      result.stdout = Buffer.from(result.stdout, 'base64').toString('utf8');
      result.stderr = Buffer.from(result.stderr, 'base64').toString('utf8');
    }
    return result;
  }

  /**
   * Runs a command and streams its output as it comes: an async iterator of
   * `{stream, data}` chunks ending with `{exit_code, …}` (see ExecStream).
   */
  execStream(cmd: Command, options?: ExecStreamOptions & { binary?: false }): ExecStream<string>;
  execStream(cmd: Command, options: ExecStreamOptions & { binary: true }): ExecStream<Buffer>;
  execStream(cmd: Command, options: ExecStreamOptions = {}): ExecStream<string> | ExecStream<Buffer> {
    const { stdin, binary = false, signal, ...fields } = options;
    const controller = new AbortController();
    const abort = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
    const streamed = stdin !== undefined && typeof stdin !== 'string' && !(stdin instanceof Uint8Array);
    const events = streamed
      ? this.sessionEvents(argv(cmd), fields, stdin, binary, abort)
      : this.ndjsonEvents(argv(cmd), fields, stdin as string | Uint8Array | undefined, binary, abort);
    return binary
      ? new ExecStream<Buffer>(events as AsyncIterable<ExecEvent<Buffer>>, controller, true)
      : new ExecStream<string>(events as AsyncIterable<ExecEvent<string>>, controller, false);
  }

  /**
   * Opens an interactive session over the WebSocket route: stdin as you write
   * it, a pseudo-terminal (`tty: {cols, rows}`), resize and signals. Resolves
   * once the command started.
   */
  async session(cmd: Command, options: SessionOptions = {}): Promise<ExecSession> {
    const { signal, ...start } = options;
    return ExecSession.open(this.http, `${this.base}/exec/ws`, { cmd: argv(cmd), ...start }, { probe: () => this.probe(), ...(signal ? { signal } : {}) });
  }

  private async *ndjsonEvents(
    cmd: string[],
    fields: ExecFields,
    stdin: string | Uint8Array | undefined,
    binary: boolean,
    signal: AbortSignal,
  ): AsyncGenerator<ExecEvent<string | Buffer>> {
    const wire = binary || stdin instanceof Uint8Array ? 'base64' : 'utf8';
    const body: ExecRequest = {
      cmd,
      ...fields,
      encoding: wire,
      ...(stdin !== undefined ? { stdin: wire === 'base64' ? Buffer.from(stdin).toString('base64') : (stdin as string) } : {}),
    };
    const context = `a line of POST ${this.base}/exec`;
    const res = await this.http.send('POST', `${this.base}/exec`, { body: { json: body }, accept: NDJSON, signal });
    // Text asked for but base64 on the wire (bytes on stdin): decode per stream, never splitting a character.
    const text = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    try {
      for await (const raw of readNdjson(res.body)) {
        const line = parseAnswer(ExecStreamLineSchema, raw, context, res.statusCode);
        if ('stream' in line) {
          if (wire === 'utf8') yield { stream: line.stream, data: line.data };
          else if (binary) yield { stream: line.stream, data: Buffer.from(line.data, 'base64') };
          else {
            const data = text[line.stream].write(Buffer.from(line.data, 'base64'));
            if (data) yield { stream: line.stream, data };
          }
        } else if ('error' in line) {
          throw new MonocoreApiError(line.error.code, line.error.message);
        } else {
          for (const s of ['stdout', 'stderr'] as const) {
            const rest = wire === 'base64' && !binary ? text[s].end() : '';
            if (rest) yield { stream: s, data: rest };
          }
          yield line;
          return;
        }
      }
      throw new MonocoreApiError('MC_API_UNREACHABLE', `the answer of POST ${this.base}/exec ended before the command's exit (the connection was cut)`);
    } catch (err) {
      if (err instanceof SyntaxError) throw new MonocoreApiError('MC_API_BAD_RESPONSE', `${context} is not JSON (${err.message})`);
      throw err;
    } finally {
      // Stopped early (break, abort, error): closing the answer kills the command.
      closeBody(res.body);
    }
  }

  private async *sessionEvents(
    cmd: string[],
    fields: ExecFields,
    stdin: Readable | AsyncIterable<Uint8Array | string>,
    binary: boolean,
    signal: AbortSignal,
  ): AsyncGenerator<ExecEvent<string | Buffer>> {
    const session = await ExecSession.open(this.http, `${this.base}/exec/ws`, { cmd, ...fields, stdin: true }, { signal, probe: () => this.probe() });
    // Not awaited at the end: a stdin that never ends (a terminal) must not hold the exit back.
    void session.writeAll(stdin).then(
      () => session.end(),
      () => session.close(),
    );
    const text = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    try {
      for await (const c of session.output()) {
        if (binary) yield c;
        else {
          const data = text[c.stream].write(c.data);
          if (data) yield { stream: c.stream, data };
        }
      }
      if (!binary) {
        for (const s of ['stdout', 'stderr'] as const) {
          const rest = text[s].end();
          if (rest) yield { stream: s, data: rest };
        }
      }
      yield await session.exit;
    } finally {
      session.close();
    }
  }
}
