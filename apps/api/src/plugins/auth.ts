import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LOCAL_TOKEN_HEADER } from '@monocore/api-schemas';
import { MonocoreError } from '@monocore/engine';

/**
 * Bearer-token check. Both sides are hashed to a fixed length first so the
 * comparison is constant-time whatever the lengths (timingSafeEqual needs
 * equal lengths, and an early length check would leak the token's length).
 *
 * Browsers cannot add an Authorization header to a page load, so for the
 * dashboard and the docs UI HTTP Basic is accepted too (any user name, the
 * token as password); 401 answers say so in WWW-Authenticate.
 */
export interface AuthOptions {
  /** The API token (MONOCORE_API_TOKEN). */
  token: string;
  /** The local CLI credential (see LOCAL_TOKEN_HEADER); also authenticates. */
  localToken?: string;
}

/** The local credential's header; its one home is @monocore/api-schemas (clients send it). */
export { LOCAL_TOKEN_HEADER };

/** True when the request carries the local credential. */
export function isLocalRequest(localToken: string | undefined, request: FastifyRequest): boolean {
  if (localToken === undefined) return false;
  const presented = request.headers[LOCAL_TOKEN_HEADER];
  return typeof presented === 'string' && tokenMatches(localToken, presented);
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

export function tokenMatches(expected: string, presented: string | undefined): boolean {
  if (presented === undefined) return false;
  return timingSafeEqual(digest(expected), digest(presented));
}

/** The credential in an Authorization header: `Bearer <token>` or `Basic base64(user:token)`. */
export function presentedToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const space = header.indexOf(' ');
  if (space < 0) return undefined;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === 'bearer') return value;
  if (scheme === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon < 0 ? undefined : decoded.slice(colon + 1);
  }
  return undefined;
}

/**
 * An onRequest hook that rejects requests without the token (MC_API_UNAUTHORIZED, 401).
 * It answers itself instead of throwing: Bull Board installs its own error
 * handler in its scope, which would turn a thrown error into a 500.
 */
export function authHook(options: AuthOptions) {
  return async function checkToken(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (tokenMatches(options.token, presentedToken(request.headers.authorization))) return;
    if (isLocalRequest(options.localToken, request)) return;
    const err = new MonocoreError(
      'MC_API_UNAUTHORIZED',
      request.headers.authorization
        ? 'the bearer token is wrong (set MONOCORE_API_TOKEN to the token the API was started with)'
        : 'this API requires a bearer token: send "Authorization: Bearer <token>" (MONOCORE_API_TOKEN)',
    );
    await reply
      .code(err.httpStatus)
      // One challenge per header line: browsers (Chromium) read one scheme per line, and with
      // "Bearer …, Basic …" on one line they see only Bearer and never prompt for credentials.
      .header('www-authenticate', ['Bearer realm="monocore"', 'Basic realm="monocore"'])
      .type('application/json; charset=utf-8')
      .serializer(JSON.stringify)
      .send(err.toJSON());
  };
}
