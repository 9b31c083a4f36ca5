import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { HostsResponseSchema } from '@monocore/api-schemas';
import { heartbeatAgeMs } from '@monocore/engine';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';

/** GET /hosts: every worker host with capacity, allocations, backend and acceleration, version, heartbeat. */
export const hostsRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  app.get(
    '/hosts',
    {
      schema: {
        summary: 'Every worker host: capacity and free resources, backend and acceleration in use, version, last heartbeat, alive',
        tags: ['hosts'],
        response: { 200: HostsResponseSchema, ...errorResponses },
      },
    },
    async () => {
      const now = Date.now();
      const hosts = await deps.orchestrator.listHosts();
      return { hosts: hosts.map((h) => ({ ...h, heartbeatAgeMs: heartbeatAgeMs(h, now) })) };
    },
  );
};
