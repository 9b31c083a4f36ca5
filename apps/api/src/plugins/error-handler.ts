import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { isMonocoreError, type ErrorCode } from '@monocore/engine';

/** The one error body every route answers with. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details: Record<string, unknown>;
  /** Copied from details.issues for validation errors: one entry per problem. */
  issues?: Array<{ path: string; message: string }>;
}

function body(code: ErrorCode, message: string, details: Record<string, unknown> = {}): ErrorBody {
  const out: ErrorBody = { code, message, details };
  const issues = details.issues;
  if (Array.isArray(issues)) out.issues = issues as ErrorBody['issues'];
  return out;
}

/** Turns a Fastify schema validation failure into `{path, message}` issues naming the field. */
function validationIssues(err: FastifyError): Array<{ path: string; message: string }> {
  const where = err.validationContext ?? 'request';
  return (err.validation ?? []).map((v) => {
    const pointer = v.instancePath ?? '';
    const path = pointer
      .split('/')
      .filter((s) => s.length > 0)
      .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`))
      .join('');
    return { path: `${where}${path}`, message: v.message ?? 'invalid' };
  });
}

/**
 * ioredis's ways of saying "Redis is not reachable right now": retries exhausted
 * while reconnecting, the offline queue disabled, or a refused/reset socket.
 * These are a 503 the client may retry, not a bug.
 */
function isRedisUnavailable(err: FastifyError): boolean {
  if (err.name === 'MaxRetriesPerRequestError') return true;
  if (/Stream isn't writeable and enableOfflineQueue/.test(err.message)) return true;
  return ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(String(err.code));
}

/**
 * Maps every error to a status and `{code, message, details}` in ONE place:
 * MonocoreError → its code's status; Fastify's own errors (bad JSON, body too
 * large, schema validation) → MC_API_* codes; Redis unreachable → 503
 * MC_API_REDIS_UNAVAILABLE; anything else → 500 MC_INTERNAL
 * without the stack (logged with the request id instead).
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (isMonocoreError(err)) {
      // Expected conditions (no hosts, Redis down, timeouts) are warnings; bugs take the MC_INTERNAL path below.
      if (err.httpStatus >= 500) request.log.warn({ code: err.code, msg: err.message }, 'request failed');
      return reply.code(err.httpStatus).send(body(err.code, err.message, err.details));
    }
    if (hasZodFastifySchemaValidationErrors(err) || Array.isArray(err.validation)) {
      const issues = validationIssues(err);
      const message = `invalid ${err.validationContext ?? 'request'}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`;
      return reply.code(400).send(body('MC_API_BAD_REQUEST', message, { issues }));
    }
    if (isResponseSerializationError(err)) {
      request.log.error({ err, issues: err.cause.issues }, 'response does not match its schema');
      return reply.code(500).send(body('MC_INTERNAL', `internal error (request ${request.id})`));
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send(body('MC_API_BODY_TOO_LARGE', `request body is larger than the limit of ${request.routeOptions.bodyLimit ?? 'the server'} bytes`));
    }
    if (isRedisUnavailable(err)) {
      request.log.warn({ err: err.message }, 'Redis unavailable');
      return reply.code(503).send(body('MC_API_REDIS_UNAVAILABLE', 'Redis is not reachable from the API right now; retry shortly (see GET /healthz)'));
    }
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status >= 400 && status < 500) {
      // Fastify's client errors (malformed JSON, unsupported media type, empty body…):
      // their messages describe the input, never internals.
      return reply.code(status).send(body('MC_API_BAD_REQUEST', err.message, { fastifyCode: err.code }));
    }
    request.log.error({ err }, 'unexpected error');
    return reply.code(500).send(body('MC_INTERNAL', `internal error (request ${request.id}); see the API log`));
  });
}
