import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Queue } from 'bullmq';
import { MonocoreError, RegistryPolicy, type SandboxApi } from '@monocore/engine';
import type { OrchestratorApi } from './orchestrator-port.js';
import { authHook, isLocalRequest } from './plugins/auth.js';
import { browserGuardHook } from './plugins/browser-guard.js';
import { registerBullBoard, type BullBoardControl } from './plugins/bull-board.js';
import { installErrorHandler } from './plugins/error-handler.js';
import { registerOpenApi } from './plugins/openapi.js';
import { deploymentRoutes } from './routes/deployments.js';
import { downRoutes } from './routes/down.js';
import type { RouteDeps } from './routes/deps.js';
import { eventsRoutes } from './routes/events.js';
import { execRoutes } from './routes/exec.js';
import { execWsRoutes } from './routes/exec-ws.js';
import { filesRoutes } from './routes/files.js';
import { healthRoutes } from './routes/healthz.js';
import { hostsRoutes } from './routes/hosts.js';
import { logsRoutes } from './routes/logs.js';
import { metricsRoutes } from './routes/metrics.js';
import { removeRoutes } from './routes/remove.js';
import { sandboxRoutes } from './routes/sandboxes.js';
import { statusRoutes } from './routes/status.js';
import { upRoutes } from './routes/up.js';
import { validateConfigBody } from './validate-config.js';
import { PortPolicy } from './port-policy.js';
import { VolumePolicy } from './volume-policy.js';

export interface BuildApiOptions {
  orchestrator: OrchestratorApi;
  /** Queues shown in Bull Board at /admin/queues (more can be set later through `app.bullBoard`). */
  queues?: readonly Queue[];
  /** Newest event id of the engine's stream (startApi reads it from Redis); lets /events start without a gap. */
  lastEventId?: () => Promise<string>;
  /** Re-lists the queues when the dashboard is used (startApi scans Redis for new ones). */
  discoverQueues?: () => Promise<readonly Queue[]>;
  /** When set, every route except /healthz requires `Authorization: Bearer <token>`. */
  auth?: { token: string };
  /**
   * The local CLI credential (`monocore serve` writes it to MONOCORE_HOME/run/api-local.token):
   * requests carrying it in X-Monocore-Local-Token are authenticated and may mount any host path.
   */
  localToken?: string;
  /** Host paths REST bodies may mount as volumes (default: none, so REST bodies with host volumes are rejected). */
  allowedVolumeRoots?: string[];
  /** MONOCORE_API_PORTS: host ports REST bodies may publish (default 1024-65535). */
  allowedPorts?: string;
  /**
   * MONOCORE_API_REGISTRIES: registries (host[:port]) and address ranges REST bodies may
   * pull from besides public addresses. Loopback registries are allowed without listing
   * while the API listens on loopback only (its callers are local processes).
   */
  allowedRegistries?: string;
  /** A pino logger (recommended), true for Fastify's default, false/undefined for none. */
  logger?: FastifyBaseLogger | boolean;
  /** Readiness probe for /healthz (startApi pings Redis). Default: always healthy. */
  healthCheck?: () => Promise<void>;
  /** Largest accepted request body, bytes. Default 1 MiB (a 1000-service config is ~300 KiB). */
  bodyLimit?: number;
  /** Upper bound for wait=true, ms. Default 10 minutes. */
  maxWaitMs?: number;
  /** Sandboxes and exec/files (startApi passes a SandboxControl); without it those routes are not served. */
  sandboxes?: SandboxApi;
  /** Largest file or tar upload, bytes (MONOCORE_API_MAX_UPLOAD). Default 1 GiB. */
  maxUploadBytes?: number;
  /**
   * The API listens on loopback only (startApi sets it): requests whose Host is not a
   * loopback name are refused (DNS rebinding). Default true; set false behind a proxy or on 0.0.0.0.
   */
  loopbackOnly?: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Change the queues Bull Board lists. */
    bullBoard: BullBoardControl;
  }
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/**
 * Builds the Fastify app (not listening). Routes are thin: parse, call the
 * orchestrator, map the result; errors are mapped once in plugins/error-handler.
 */
export async function buildApi(options: BuildApiOptions): Promise<FastifyInstance> {
  if (options.auth && options.auth.token.length < 16) {
    throw new MonocoreError('MC_USAGE', 'the API token must be at least 16 characters (MONOCORE_API_TOKEN)');
  }
  const logger = options.logger;
  const loopbackOnly = options.loopbackOnly ?? true;
  const portPolicy = PortPolicy.fromEnv(options.allowedPorts);
  const registryPolicy = RegistryPolicy.fromEnv(options.allowedRegistries, { allowLoopback: loopbackOnly });
  const app = Fastify({
    ...(logger === undefined || typeof logger === 'boolean' ? { logger: logger ?? false } : { loggerInstance: logger }),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // Parameters, never stack traces, go to the client; keep ids short for logs.
    requestIdHeader: false,
    return503OnClosing: true,
    forceCloseConnections: true,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandler(app);
  // Before auth and routing, for every request (health included): web pages stay out.
  app.addHook('onRequest', browserGuardHook({ loopbackOnly }));
  // Fastify's JSON parser (prototype-poisoning checks kept), except that an empty
  // body is "no body": `curl -X POST /down -H 'Content-Type: application/json'` means {}.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, text, done) => {
    if (typeof text === 'string' && text.trim() === '') {
      done(null, undefined);
      return;
    }
    defaultJson(request, typeof text === 'string' ? text : text.toString('utf8'), done);
  });

  const token = options.auth?.token;
  const localToken = options.localToken;
  if (localToken !== undefined && localToken.length < 16) throw new MonocoreError('MC_USAGE', 'the local API token must be at least 16 characters');
  const checkToken = token !== undefined ? authHook({ token, ...(localToken !== undefined ? { localToken } : {}) }) : undefined;
  app.setNotFoundHandler(
    checkToken ? { preHandler: checkToken } : {},
    async (request) => {
      throw new MonocoreError('MC_API_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]} (see GET /openapi.json)`);
    },
  );

  await registerOpenApi(app, token !== undefined);

  const deps: RouteDeps = {
    orchestrator: options.orchestrator,
    volumePolicy: new VolumePolicy(options.allowedVolumeRoots ?? []),
    portPolicy,
    registryPolicy,
    isLocal: (request) => isLocalRequest(localToken, request),
    validateConfig: validateConfigBody,
    maxWaitMs: options.maxWaitMs ?? 10 * 60_000,
    ...(options.lastEventId ? { lastEventId: options.lastEventId } : {}),
    ...(options.sandboxes ? { sandboxes: options.sandboxes } : {}),
    ...(options.maxUploadBytes !== undefined ? { maxUploadBytes: options.maxUploadBytes } : {}),
  };
  // Interactive exec sessions; the upgrade request passes the same hooks (browser guard, token) as any route.
  await app.register(fastifyWebsocket, { options: { maxPayload: 1 << 20 } });

  // Unauthenticated: health only.
  await app.register(healthRoutes, { healthCheck: options.healthCheck ?? (async () => undefined) });

  // Everything else sits in one encapsulated scope behind the token.
  await app.register(async (scope) => {
    if (checkToken) scope.addHook('onRequest', checkToken);
    await scope.register(upRoutes, deps);
    await scope.register(downRoutes, deps);
    await scope.register(removeRoutes, deps);
    await scope.register(statusRoutes, deps);
    await scope.register(logsRoutes, deps);
    await scope.register(eventsRoutes, deps);
    await scope.register(deploymentRoutes, deps);
    await scope.register(hostsRoutes, deps);
    await scope.register(metricsRoutes, deps);
    if (deps.sandboxes) {
      await scope.register(sandboxRoutes, deps);
      await scope.register(execRoutes, deps);
      await scope.register(async (ws) => execWsRoutes(ws, deps));
      await scope.register(filesRoutes, deps);
    }
    scope.get('/openapi.json', { schema: { hide: true, response: { 200: z.unknown() } } }, async () => app.swagger());
    await scope.register(fastifySwaggerUi, { routePrefix: '/docs' });
  });

  const control = await registerBullBoard(app, {
    queues: options.queues ?? [],
    token,
    localToken,
    ...(options.discoverQueues ? { discover: options.discoverQueues } : {}),
  });
  app.decorate('bullBoard', control);
  return app;
}
