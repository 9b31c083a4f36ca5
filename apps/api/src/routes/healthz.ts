import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { HealthSchema } from '@monocore/api-schemas';
import { MonocoreError } from '@monocore/engine';
import { ErrorBodySchema } from '../schemas/common.js';

export interface HealthDeps {
  /** Resolves when Redis answers (PING); rejects otherwise. */
  healthCheck: () => Promise<void>;
}

/** GET /healthz: unauthenticated on purpose (load balancers, `monocore serve` readiness); reveals nothing but up/down. */
export const healthRoutes: FastifyPluginAsyncZod<HealthDeps> = async (app, deps) => {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness and readiness: 200 when Redis answers, 503 otherwise (no auth required)',
        tags: ['meta'],
        security: [],
        response: { 200: HealthSchema, 503: ErrorBodySchema },
      },
    },
    async () => {
      try {
        await deps.healthCheck();
      } catch (err) {
        throw new MonocoreError('MC_API_REDIS_UNAVAILABLE', `Redis is not reachable: ${err instanceof Error ? err.message : String(err)}`);
      }
      return { status: 'ok' as const, redis: 'up' as const };
    },
  );
};
