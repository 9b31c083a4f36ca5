import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { DeploymentOutcomeSchema, DeploymentParamsSchema, DeploymentWaitQuerySchema } from '@monocore/api-schemas';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';

/**
 * GET /deployments/:id/wait: long-poll until a deployment settles. The CLI
 * posts /up without waiting (so it can print the plan and live progress from
 * /events), then waits here for the engine's verdict.
 */
export const deploymentRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  app.get(
    '/deployments/:id/wait',
    {
      schema: {
        summary: 'Wait until a deployment settles (every service running/failed/blocked, or stopped for down)',
        tags: ['services'],
        params: DeploymentParamsSchema,
        querystring: DeploymentWaitQuerySchema,
        response: { 200: DeploymentOutcomeSchema, ...errorResponses, 504: errorResponses[500] },
      },
    },
    async (request, reply) => {
      const timeoutMs = Math.min(request.query.timeout !== undefined ? request.query.timeout * 1000 : deps.maxWaitMs, deps.maxWaitMs);
      const gone = new AbortController();
      // ServerResponse 'close' = the client went away (IncomingMessage 'close' fires once the body is read).
      reply.raw.on('close', () => gone.abort());
      return deps.orchestrator.waitFor(request.params.id, { timeoutMs, signal: gone.signal });
    },
  );
};
