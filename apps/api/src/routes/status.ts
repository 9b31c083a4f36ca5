import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { StatusQuerySchema, StatusResponseSchema } from '@monocore/api-schemas';
import { errorResponses } from '../schemas/common.js';
import { SharedReads } from '../shared-reads.js';
import type { RouteDeps } from './deps.js';

export const statusRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  // Dashboards and `status --watch` poll this. With 1,000 services one answer is one Redis
  // read plus ~270 KB of JSON: identical requests that arrive within a few milliseconds share
  // the read and the encoded body (bench/status.mjs), instead of queueing one behind another.
  const shared = new SharedReads<Buffer>();
  app.get(
    '/status',
    {
      schema: {
        summary: 'Every service with its actual and desired state',
        tags: ['services'],
        querystring: StatusQuerySchema,
        response: { 200: StatusResponseSchema, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { group, services, status } = request.query;
      const body = await shared.get(JSON.stringify([group, services, status]), async () => {
        const all = await deps.orchestrator.status({
          ...(group !== undefined ? { group } : {}),
          ...(services !== undefined ? { services } : {}),
        });
        const wanted = status ? new Set(status) : undefined;
        // The route's own serializer: the body is checked against StatusResponseSchema as any reply is.
        // Encoded to bytes once too: each reply then only copies them to its socket.
        return Buffer.from(reply.serialize({ services: wanted ? all.filter((s) => wanted.has(s.status)) : all }) as string);
      });
      // Bytes are sent as they are: Fastify serializes only objects (the type provider's
      // payload type does not know that, hence the cast).
      return reply.type('application/json; charset=utf-8').send(body as never);
    },
  );
};
