import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { ClusterMetricsSnapshot } from '@monocore/engine';
import { PrometheusExposition } from '../prometheus-exposition.js';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';

/**
 * How long a scrape waits for Redis. Prometheus's default scrape timeout is
 * 10 s: answering in time with `monocore_cluster_up 0` (and the process's own
 * metrics) says more than a failed scrape.
 */
const CLUSTER_READ_TIMEOUT_MS = 5_000;

/**
 * GET /metrics: the Prometheus text exposition of the whole cluster (read from
 * Redis, where workers and pullers record what they measure) and of this API
 * process. One scrape target for any number of hosts.
 */
export const metricsRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  const exposition = new PrometheusExposition();
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics: services by state, deployments, restarts, queue depths, durations, hosts, and this API process',
        description:
          'Prometheus text format 0.0.4. The cluster part is read from Redis at each scrape, so every API process gives the same answer ' +
          'and no worker needs to be scraped. monocore_cluster_up is 0 when Redis did not answer in time (then only process metrics follow).',
        tags: ['meta'],
        produces: ['text/plain'],
        response: { 200: z.string().describe('Prometheus text exposition'), ...errorResponses },
      },
    },
    async (request, reply) => {
      let cluster: ClusterMetricsSnapshot | undefined;
      try {
        cluster = await withTimeout(deps.orchestrator.metrics(), CLUSTER_READ_TIMEOUT_MS);
      } catch (err) {
        request.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'metrics: cluster state not read');
      }
      return reply.type(exposition.contentType).send(await exposition.render(cluster));
    },
  );
};

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
