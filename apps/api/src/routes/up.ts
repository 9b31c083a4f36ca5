import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { MonocoreError } from '@monocore/engine';
import type { FastifySchemaCompiler } from 'fastify';
import { ConfigBodySchema } from '../schemas/config-body.js';
import { UpEnvelopeSchema, UpQuerySchema, UpResultSchema } from '@monocore/api-schemas';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';

const UpBodySchema = z
  .union([
    ConfigBodySchema,
    UpEnvelopeSchema.extend({ config: ConfigBodySchema }),
  ])
  .describe('the configuration (same keys as monocore.toml), or {config, group?, services?, wait?, timeout?}');

/**
 * The body is validated by validateConfig in the handler, not by the route
 * schema, so a bad config gets EVERY issue (shape and cross-field: unknown
 * depends_on, cycles, duplicate names, ports) in one 400 with the config's own
 * paths (`service[1].depends_on[0]`). The schema above still documents it.
 */
const passBodyThrough: FastifySchemaCompiler<unknown> = (route) =>
  route.httpPart === 'body' ? (data: unknown) => ({ value: data }) : validatorCompiler(route as Parameters<typeof validatorCompiler>[0]);

/** Every image reference of a (validated) config body, with the field that names it. */
function imagesOf(config: unknown): Array<{ field: string; reference: string }> {
  const services = (config as { service?: unknown } | null)?.service;
  return (Array.isArray(services) ? services : []).flatMap((svc: unknown, i) => {
    const base = (svc as { base?: unknown } | null)?.base;
    return typeof base === 'string' ? [{ field: `service[${i}].base`, reference: base }] : [];
  });
}

export const upRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  app.post(
    '/up',
    {
      validatorCompiler: passBodyThrough,
      schema: {
        summary: 'Start services from a configuration',
        description:
          'Validates the configuration (400 MC_CONFIG_INVALID with every issue), plans the dependency order, places ' +
          'services on hosts and enqueues the start flow. Answers 202 at once with the deployment id and the plan, ' +
          'or with wait=true 200 once every selected service is running or has failed/blocked. Host volumes are ' +
          'allowed only under MONOCORE_API_VOLUME_ROOTS, host ports only in MONOCORE_API_PORTS (400 MC_API_PORT_NOT_ALLOWED), ' +
          'and images only from public registries or those in MONOCORE_API_REGISTRIES (400 MC_OCI_REGISTRY_REFUSED).',
        tags: ['services'],
        querystring: UpQuerySchema,
        body: UpBodySchema,
        response: { 200: UpResultSchema, 202: UpResultSchema, ...errorResponses, 504: errorResponses[500] },
      },
    },
    async (request, reply) => {
      const raw: unknown = request.body;
      if (raw === undefined || raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        throw new MonocoreError('MC_API_BAD_REQUEST', 'the request body must be the configuration as a JSON object ({"service": [...], "group": [...]})', {
          issues: [{ path: 'body', message: 'expected a JSON object' }],
        });
      }
      let config: unknown = raw;
      let { group, services, wait, timeout } = request.query;
      if ('config' in raw) {
        const env = UpEnvelopeSchema.safeParse(raw);
        if (!env.success) {
          const issues = env.error.issues.map((i) => ({ path: ['body', ...i.path.map(String)].join('.'), message: i.message }));
          throw new MonocoreError('MC_API_BAD_REQUEST', `invalid body: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
        }
        config = env.data.config;
        group = env.data.group ?? group;
        services = env.data.services ?? services;
        wait = env.data.wait ?? wait;
        timeout = env.data.timeout ?? timeout;
      }
      deps.validateConfig(config);
      const local = deps.isLocal(request);
      if (!local) {
        deps.volumePolicy.check(config);
        deps.portPolicy.check(config);
        await deps.registryPolicy.check(imagesOf(config));
      }
      const timeoutMs = Math.min(timeout !== undefined ? timeout * 1000 : deps.maxWaitMs, deps.maxWaitMs);
      const result = await deps.orchestrator.up(config, {
        ...(group !== undefined ? { group } : {}),
        ...(services !== undefined ? { services } : {}),
        ...(local ? {} : { registryPolicy: deps.registryPolicy.data }),
      });
      if (wait === true) {
        // Waiting is separate from enqueueing: a client that goes away stops the wait, never the deployment.
        const gone = new AbortController();
        reply.raw.on('close', () => gone.abort());
        const outcome = await deps.orchestrator.waitFor(result.deploymentId, { timeoutMs, signal: gone.signal });
        return reply.code(200).send({ ...result, services: outcome.services, ok: outcome.ok });
      }
      return reply.code(202).send(result);
    },
  );
};
