import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorResponses, NameList } from '../schemas/common.js';
import { StatusResponseSchema } from '../schemas/service-status.js';
import type { RouteDeps } from './deps.js';

const StatusQuerySchema = z.strictObject({
  group: z.string().min(1).max(63).optional().describe('only services of this group'),
  services: NameList.optional(),
  status: NameList.optional().describe('only services in one of these states, e.g. running,failed'),
});

export const statusRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
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
    async (request) => {
      const { group, services, status } = request.query;
      const all = await deps.orchestrator.status({
        ...(group !== undefined ? { group } : {}),
        ...(services !== undefined ? { services } : {}),
      });
      const wanted = status ? new Set(status) : undefined;
      return { services: wanted ? all.filter((s) => wanted.has(s.status)) : all };
    },
  );
};
