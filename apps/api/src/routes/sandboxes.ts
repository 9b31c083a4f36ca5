import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import {
  CreateSandboxQuerySchema,
  CreateSandboxRequestSchema,
  ForkSandboxRequestSchema,
  ForkSandboxResponseSchema,
  ListSandboxesQuerySchema,
  SandboxListSchema,
  SandboxParamsSchema,
  SandboxSchema,
} from '@monocore/api-schemas';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';

const sandboxErrors = { ...errorResponses, 409: errorResponses[400], 410: errorResponses[400], 503: errorResponses[500], 501: errorResponses[500], 504: errorResponses[500] };

/** POST/GET /sandboxes, GET/DELETE /sandboxes/:id, POST /sandboxes/:id/pause|resume|fork (docs/API.md "Sandboxes"). */
export const sandboxRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  const sandboxes = deps.sandboxes!;

  app.post(
    '/sandboxes',
    {
      schema: {
        summary: 'Create a sandbox',
        description:
          'Places a microVM on a host with room, pulls the image there, boots it with the guest agent and answers 201 once ' +
          'it accepts commands (202 at once with wait=false). A failed pull fails the call with the registry\'s reason and ' +
          'code; images only from public registries or those in MONOCORE_API_REGISTRIES (400 MC_OCI_REGISTRY_REFUSED).',
        tags: ['sandboxes'],
        querystring: CreateSandboxQuerySchema,
        body: CreateSandboxRequestSchema,
        response: { 201: SandboxSchema, 202: SandboxSchema, ...sandboxErrors },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const local = deps.isLocal(request);
      if (!local) await deps.registryPolicy.check([{ field: 'image', reference: body.image }]);
      const wait = request.query.wait !== false;
      const gone = new AbortController();
      reply.raw.on('close', () => gone.abort());
      const sandbox = await sandboxes.create(body, {
        wait,
        timeoutMs: deps.maxWaitMs,
        signal: gone.signal,
        ...(local ? {} : { registryPolicy: deps.registryPolicy.data }),
      });
      return reply.code(wait ? 201 : 202).send(sandbox);
    },
  );

  app.get(
    '/sandboxes',
    {
      schema: {
        summary: 'Every sandbox (ended ones during the retention period), oldest first',
        tags: ['sandboxes'],
        querystring: ListSandboxesQuerySchema,
        response: { 200: SandboxListSchema, ...errorResponses },
      },
    },
    async (request) => ({ sandboxes: await sandboxes.list(request.query.status ? { status: request.query.status } : {}) }),
  );

  app.get(
    '/sandboxes/:id',
    {
      schema: {
        summary: 'One sandbox',
        tags: ['sandboxes'],
        params: SandboxParamsSchema,
        response: { 200: SandboxSchema, ...errorResponses },
      },
    },
    async (request) => sandboxes.get(request.params.id),
  );

  app.delete(
    '/sandboxes/:id',
    {
      schema: {
        summary: 'Delete a sandbox',
        description: 'Kills its VM, deletes its disk and releases its lease and capacity; answers with the final record. Idempotent.',
        tags: ['sandboxes'],
        params: SandboxParamsSchema,
        response: { 200: SandboxSchema, ...sandboxErrors },
      },
    },
    async (request) => sandboxes.delete(request.params.id),
  );

  app.post(
    '/sandboxes/:id/pause',
    {
      schema: {
        summary: 'Pause a sandbox',
        description:
          'Saves its VM (memory, processes) next to its disk on its host and ends its QEMU process: a paused sandbox uses no host memory ' +
          'and no host capacity. Exec and files answer 409 until it is resumed. timeout_s still counts. Idempotent (docs/SNAPSHOTS.md).',
        tags: ['sandboxes'],
        params: SandboxParamsSchema,
        response: { 200: SandboxSchema, ...sandboxErrors },
      },
    },
    async (request) => sandboxes.pause(request.params.id),
  );

  app.post(
    '/sandboxes/:id/resume',
    {
      schema: {
        summary: 'Resume a paused sandbox',
        description:
          'Restores it on the host it was paused on, with its processes still running, its files, a wall clock set from the host and a ' +
          'reseeded random pool. That host must be up and have room for it (503 MC_ORCH_NO_CAPACITY otherwise). Idempotent.',
        tags: ['sandboxes'],
        params: SandboxParamsSchema,
        response: { 200: SandboxSchema, ...sandboxErrors },
      },
    },
    async (request) => sandboxes.resume(request.params.id),
  );

  app.post(
    '/sandboxes/:id/fork',
    {
      schema: {
        summary: 'Fork a running sandbox',
        description:
          'New sandboxes whose memory, processes and files continue from this one\'s at one instant (it pauses only while its ' +
          'state is saved and its disk copied), each with its own disk copy, hostname and reseeded random pool, on the same host ' +
          '(which must have room for them). Same settings; lifetimes count from now. Answers once they accept commands (docs/SNAPSHOTS.md).',
        tags: ['sandboxes'],
        params: SandboxParamsSchema,
        body: ForkSandboxRequestSchema,
        response: { 201: ForkSandboxResponseSchema, ...sandboxErrors },
      },
    },
    async (request, reply) => {
      const children = await sandboxes.fork(request.params.id, request.body.count);
      return reply.code(201).send({ sandboxes: children });
    },
  );
};
