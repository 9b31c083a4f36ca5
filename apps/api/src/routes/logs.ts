import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { MonocoreError } from '@monocore/engine';
import { LogsParamsSchema, LogsQuerySchema } from '@monocore/api-schemas';
import { errorResponses } from '../schemas/common.js';
import { SseStream } from '../sse.js';
import type { RouteDeps } from './deps.js';

const withNewline = (line: string): string => (line.endsWith('\n') ? line : `${line}\n`);

export const logsRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  app.get(
    '/services/:name/logs',
    {
      schema: {
        summary: "A service's stdout or stderr",
        description:
          'text/plain lines. With follow=true the response stays open: chunked text/plain by default, ' +
          'Server-Sent Events ("log" events, one data line per log line) when the client sends Accept: text/event-stream.',
        tags: ['services'],
        params: LogsParamsSchema,
        querystring: LogsQuerySchema,
        produces: ['text/plain', 'text/event-stream'],
        response: { 200: z.string().describe('log lines'), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const { stream, tail, follow } = request.query;
      // Answer an unknown service with a 404 before any byte of a stream is sent.
      const known = await deps.orchestrator.status({ services: [name] });
      if (!known.some((s) => s.name === name)) {
        throw new MonocoreError('MC_ORCH_UNKNOWN_SERVICE', `no service named "${name}" (see GET /status)`, { service: name });
      }
      const gone = new AbortController();
      reply.raw.on('close', () => gone.abort());
      const lines = deps.orchestrator.logs(name, { stream, follow, signal: gone.signal, ...(tail !== undefined ? { tail } : {}) });

      if (!follow) {
        let text = '';
        for await (const line of lines) text += withNewline(line);
        return reply.type('text/plain; charset=utf-8').send(text);
      }

      if ((request.headers.accept ?? '').includes('text/event-stream')) {
        const sse = new SseStream(reply);
        try {
          for await (const line of lines) {
            if (sse.signal.aborted) break;
            await sse.sendText('log', line);
          }
        } catch (err) {
          if (!sse.signal.aborted) await sse.send('error', errorPayload(err));
        } finally {
          sse.end();
        }
        return reply;
      }

      // Chunked text/plain: what `curl -N` and `monocore logs -f` read.
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
      try {
        for await (const line of lines) {
          if (raw.destroyed) break;
          if (!raw.write(withNewline(line))) await new Promise((r) => raw.once('drain', r));
        }
      } catch (err) {
        request.log.warn({ err, service: name }, 'log stream ended with an error');
      } finally {
        if (!raw.writableEnded) raw.end();
      }
      return reply;
    },
  );
};

function errorPayload(err: unknown): { code: string; message: string } {
  if (err instanceof MonocoreError) return { code: err.code, message: err.message };
  return { code: 'MC_INTERNAL', message: 'the stream failed; see the API log' };
}
