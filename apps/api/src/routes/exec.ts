import type { ServerResponse } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ExecRequestSchema, ExecResultSchema, NDJSON } from '@monocore/api-schemas';
import { MonocoreError, type RelayCall, type RelayOp } from '@monocore/engine';
import { writeOrWait } from '@monocore/engine/write-or-wait';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';
import { EXEC_TARGETS, targetOf } from './exec-target.js';

/** Buffered output is capped per stream (the rest is read and dropped; `truncated` says so). */
export const MAX_BUFFERED_OUTPUT = 16 << 20;

const callErrors = { ...errorResponses, 409: errorResponses[400], 410: errorResponses[400], 413: errorResponses[400], 503: errorResponses[500] };

/** POST /sandboxes/:id/exec and POST /services/:name/exec: buffered JSON, or NDJSON with Accept: application/x-ndjson. */
export const execRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  const sandboxes = deps.sandboxes!;
  for (const t of EXEC_TARGETS) {
    app.post(
      `${t.prefix}/exec`,
      {
        schema: {
          summary: `Run a command in a ${t.kind}`,
          description:
            'Waits and answers {exit_code, stdout, stderr, duration_ms, timed_out} by default. With Accept: application/x-ndjson ' +
            'the answer streams one JSON object per output chunk ({"stream":"stdout","data":…}) and ends with {"exit_code":N,…} ' +
            '(or {"error":{code,message}}). Closing the request kills the command.',
          tags: [t.tag],
          params: t.params,
          body: ExecRequestSchema,
          produces: ['application/json', NDJSON],
          response: { 200: ExecResultSchema.or(z.string().describe('NDJSON lines (ExecStreamLine)')), ...callErrors },
        },
      },
      async (request, reply) => {
        const b = request.body;
        const op: RelayOp = {
          op: 'exec',
          argv: b.cmd,
          stdin: b.stdin !== undefined,
          ...(b.env ? { env: b.env } : {}),
          ...(b.cwd !== undefined ? { cwd: b.cwd } : {}),
          ...(b.user !== undefined ? { user: b.user } : {}),
          ...(b.timeout_s !== undefined ? { timeoutMs: Math.ceil(b.timeout_s * 1000) } : {}),
        };
        const call = await sandboxes.call(targetOf(t.kind, request.params), op);
        let finished = false;
        // The client went away: kill the command (nobody reads its output, and flow control would hold it forever).
        reply.raw.on('close', () => {
          if (!finished) call.close();
        });
        try {
          if (b.stdin !== undefined) void feed(call, Buffer.from(b.stdin, b.encoding === 'base64' ? 'base64' : 'utf8'));
          const streaming = (request.headers.accept ?? '').includes(NDJSON);
          if (streaming) {
            await call.opened; // a failure to start keeps its own HTTP status
            reply.hijack();
            await streamNdjson(call, reply.raw, b.encoding);
            return reply;
          }
          return await buffered(call, b.encoding);
        } finally {
          finished = true;
        }
      },
    );
  }
};

/** stdin, then EOF; a call that ends first (the command did not read it all) just drops the rest. */
async function feed(call: RelayCall, data: Buffer): Promise<void> {
  try {
    if (data.length > 0) await call.write(data);
    await call.end();
  } catch {
    // the call ended (or failed: its result says why)
  }
}

async function buffered(call: RelayCall, encoding: 'utf8' | 'base64'): Promise<z.infer<typeof ExecResultSchema>> {
  const parts = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const size = { stdout: 0, stderr: 0 };
  const truncated = { stdout: false, stderr: false };
  for await (const c of call.output()) {
    const room = MAX_BUFFERED_OUTPUT - size[c.stream];
    if (room <= 0) {
      truncated[c.stream] = true;
      continue;
    }
    const keep = c.data.length > room ? c.data.subarray(0, room) : c.data;
    if (keep.length < c.data.length) truncated[c.stream] = true;
    parts[c.stream].push(keep);
    size[c.stream] += keep.length;
  }
  const end = await call.result;
  const exit = end.exit;
  if (!exit) throw new MonocoreError('MC_INTERNAL', `call ${call.id}: the worker ended an exec without its exit`);
  const text = (bufs: Buffer[]): string => Buffer.concat(bufs).toString(encoding === 'base64' ? 'base64' : 'utf8');
  return {
    exit_code: exit.exitCode,
    stdout: text(parts.stdout),
    stderr: text(parts.stderr),
    duration_ms: exit.durationMs,
    timed_out: exit.timedOut,
    signal: exit.signal,
    truncated,
    ...(exit.spawnError !== undefined ? { spawn_error: exit.spawnError } : {}),
  };
}

/** One JSON line per chunk, every byte in order, with the HTTP client's pace as back-pressure; one final line. */
async function streamNdjson(call: RelayCall, raw: ServerResponse, encoding: 'utf8' | 'base64'): Promise<void> {
  raw.writeHead(200, { 'content-type': `${NDJSON}; charset=utf-8`, 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  const write = async (obj: unknown): Promise<void> => {
    if (raw.destroyed) throw new Error('client gone');
    await writeOrWait(raw, `${JSON.stringify(obj)}\n`);
  };
  // Text mode: a multi-byte character split across chunks is joined, never mangled.
  const dec = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  try {
    for await (const c of call.output()) {
      const data = encoding === 'base64' ? c.data.toString('base64') : dec[c.stream].write(c.data);
      if (data.length > 0) await write({ stream: c.stream, data });
    }
    if (encoding === 'utf8') {
      for (const s of ['stdout', 'stderr'] as const) {
        const rest = dec[s].end();
        if (rest.length > 0) await write({ stream: s, data: rest });
      }
    }
    const exit = (await call.result).exit;
    await write(
      exit
        ? { exit_code: exit.exitCode, signal: exit.signal, timed_out: exit.timedOut, duration_ms: exit.durationMs, ...(exit.spawnError !== undefined ? { spawn_error: exit.spawnError } : {}) }
        : { error: { code: 'MC_INTERNAL', message: 'the worker ended the exec without its exit' } },
    );
  } catch (err) {
    if (!raw.destroyed) {
      const e = err instanceof MonocoreError ? err : new MonocoreError('MC_INTERNAL', 'the exec failed; see the API log');
      await write({ error: { code: e.code, message: e.message } }).catch(() => undefined);
    }
  } finally {
    if (!raw.writableEnded) raw.end();
  }
}
