import type { FastifyReply, FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import { MonocoreError } from '@monocore/engine';

/**
 * Keeps web pages out. A page in the operator's browser can POST to
 * http://127.0.0.1:3456 (no-cors requests need no preflight and carry cached
 * Basic credentials), and with DNS rebinding it can even read the answers
 * under its own host name. So:
 *  - a request carrying an Origin must come from the API's own origin (the
 *    dashboard and docs pages it serves); any other origin, or "null", is refused;
 *  - while the API listens on loopback, the Host header must name loopback
 *    (127.x, ::1, localhost): a rebound name such as evil.example is refused.
 * Non-browser clients (curl, the CLI) send no Origin and a loopback Host.
 */
export interface BrowserGuardOptions {
  /** True when the API listens on a loopback address only. */
  loopbackOnly: boolean;
}

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(1, hostHeader.indexOf(']'));
  const colon = hostHeader.lastIndexOf(':');
  return colon > 0 && hostHeader.indexOf(':') === colon ? hostHeader.slice(0, colon) : hostHeader;
}

function isLoopbackName(name: string): boolean {
  const h = name.toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

async function refuse(reply: FastifyReply, message: string): Promise<void> {
  const err = new MonocoreError('MC_API_FORBIDDEN', message);
  await reply.code(err.httpStatus).type('application/json; charset=utf-8').serializer(JSON.stringify).send(err.toJSON());
}

export function browserGuardHook(options: BrowserGuardOptions) {
  return async function browserGuard(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const host = request.headers.host ?? '';
    if (options.loopbackOnly && !isLoopbackName(hostnameOf(host))) {
      return refuse(reply, `Host "${host}" is not a loopback name: this API listens on loopback only`);
    }
    const origin = request.headers.origin;
    if (origin === undefined) return;
    let originHost: string | undefined;
    try {
      originHost = new URL(origin).host;
    } catch {
      originHost = undefined;
    }
    if (originHost === undefined || originHost !== host) {
      return refuse(reply, `cross-origin request from ${origin} refused (only pages served by this API may call it)`);
    }
  };
}
