import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorResponses } from '../schemas/common.js';
import { ServiceStatusSchema } from '../schemas/service-status.js';
import type { RouteDeps } from './deps.js';

const DeploymentOutcomeSchema = z
  .object({
    deploymentId: z.string(),
    ok: z.boolean().describe('every service reached its goal (running for up, stopped for down/remove)'),
    services: z.array(ServiceStatusSchema),
  })
  .meta({ id: 'DeploymentOutcome' });

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
        params: z.strictObject({ id: z.string().min(1).max(128).regex(/^[A-Za-z0-9._-]+$/, 'a deployment id as returned by /up, /down or /remove') }),
        querystring: z.strictObject({
          timeout: z.coerce.number().int().min(1).max(3600).optional().describe('seconds to wait at most (504 MC_ORCH_TIMEOUT after)'),
        }),
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
