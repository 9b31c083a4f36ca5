import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { DownResultSchema, SelectionSchema, StopQuerySchema } from '@monocore/api-schemas';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';

/** POST /down and POST /remove (routes/remove.ts) share the selection body: `{}`, `{group}` or `{services}`. */
export function stopRoute(action: 'down' | 'remove'): FastifyPluginAsyncZod<RouteDeps> {
  return async (app, deps) => {
    app.post(
      `/${action}`,
      {
        schema: {
          summary: action === 'down' ? 'Stop services (dependents first)' : 'Stop services if needed, then delete their writable layer and state',
          description:
            'Body: {} or no body for every service, {"group": "name"} for one group, {"services": ["a", "b"]} for named services. ' +
            'Answers 202 with the stop order at once, or 200 once stopped with wait=true.',
          tags: ['services'],
          querystring: StopQuerySchema,
          body: SelectionSchema.nullish(),
          response: { 200: DownResultSchema, 202: DownResultSchema, ...errorResponses, 504: errorResponses[500] },
        },
      },
      async (request, reply) => {
        const selection = request.body ?? {};
        const wait = request.query.wait === true;
        const timeoutMs = Math.min(request.query.timeout !== undefined ? request.query.timeout * 1000 : deps.maxWaitMs, deps.maxWaitMs);
        const options = { ...selection, wait, ...(wait ? { timeoutMs } : {}) };
        const result = action === 'down' ? await deps.orchestrator.down(options) : await deps.orchestrator.remove(options);
        return reply.code(wait ? 200 : 202).send(result);
      },
    );
  };
}

export const downRoutes = stopRoute('down');
