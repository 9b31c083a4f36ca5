import { ErrorBodySchema } from '@monocore/api-schemas';

/**
 * The error body every route answers with (see plugins/error-handler.ts). The
 * schemas of the routes' queries, bodies and answers live in @monocore/api-schemas,
 * shared with the clients; this file keeps only what is Fastify's business.
 */
export { ErrorBodySchema };

export const errorResponses = {
  400: ErrorBodySchema,
  401: ErrorBodySchema,
  404: ErrorBodySchema,
  500: ErrorBodySchema,
} as const;
