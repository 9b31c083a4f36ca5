import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { EventsQuerySchema } from '@monocore/api-schemas';
import { errorResponses } from '../schemas/common.js';
import { SseStream } from '../sse.js';
import type { RouteDeps } from './deps.js';

/**
 * GET /events: Server-Sent Events, one `state` event per entry of the engine's
 * event stream (service transitions, deployment and host events). Each event
 * carries its stream id, so a client that reconnects with Last-Event-ID misses
 * nothing the capped stream still holds.
 */
export const eventsRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  app.get(
    '/events',
    {
      schema: {
        summary: 'Live state events (Server-Sent Events)',
        description: 'text/event-stream; each event is `event: state`, `id: <stream id>`, `data: <StateEvent JSON>`.',
        tags: ['services'],
        querystring: EventsQuerySchema,
        produces: ['text/event-stream'],
        response: { 200: z.string().describe('an endless text/event-stream'), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { services, sandboxes, deployment } = request.query;
      const lastEventId = request.headers['last-event-id'];
      const since =
        request.query.since ??
        (typeof lastEventId === 'string' && /^\d+-\d+$/.test(lastEventId) ? lastEventId : undefined) ??
        (deps.lastEventId ? await deps.lastEventId() : undefined);
      const only = services ? new Set(services) : undefined;
      const onlySandboxes = sandboxes ? new Set(sandboxes) : undefined;
      const sse = new SseStream(reply);
      try {
        for await (const event of deps.orchestrator.events({ signal: sse.signal, ...(since !== undefined ? { since } : {}) })) {
          if (sse.signal.aborted) break;
          if (only && (event.service === undefined || !only.has(event.service))) continue;
          if (onlySandboxes && (event.sandbox === undefined || !onlySandboxes.has(event.sandbox))) continue;
          if (deployment !== undefined && event.deploymentId !== deployment) continue;
          await sse.send('state', event, event.id);
        }
      } catch (err) {
        if (!sse.signal.aborted) {
          request.log.warn({ err }, 'event stream failed');
          await sse.send('error', { code: 'MC_INTERNAL', message: 'the event stream failed; reconnect with Last-Event-ID' });
        }
      } finally {
        sse.end();
      }
      return reply;
    },
  );
};
