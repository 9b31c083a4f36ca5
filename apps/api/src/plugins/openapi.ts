import type { FastifyInstance } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { VERSION } from '@monocore/engine';

/**
 * @fastify/swagger collects every route registered after it; the zod route
 * schemas become the document (one schema = validator, TypeScript type and
 * OpenAPI doc). Must be registered at the root, before the routes.
 */
export async function registerOpenApi(app: FastifyInstance, withAuth: boolean): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'monocore API',
        description:
          'Secure microVM provisioning and orchestration. Errors are {code, message, details} with the codes of docs/ERRORS.md.' +
          (withAuth ? ' Every route except /healthz requires "Authorization: Bearer <token>".' : ''),
        version: VERSION,
      },
      tags: [
        { name: 'services', description: 'deploy, stop, inspect services; exec and files in running services' },
        { name: 'sandboxes', description: 'long-lived microVMs for interaction: create, exec, files, delete' },
        { name: 'hosts', description: 'the worker hosts services run on' },
        { name: 'meta', description: 'health, metrics and documentation' },
      ],
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      ...(withAuth ? { security: [{ bearer: [] }] } : {}),
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
}
