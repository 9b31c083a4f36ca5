import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import type { z } from 'zod';
import { ErrorBodySchema, LOCAL_TOKEN_HEADER } from '@monocore/api-schemas';
import { defaultApiUrl, isLoopbackHost, parseApiUrl } from './api-url.js';
import { readLocalCredential } from './local-credential.js';
import { MonocoreApiError } from './monocore-api-error.js';

export interface MonocoreClientOptions {
  /** Base URL of the API. Default: $MONOCORE_API_URL, else http://127.0.0.1:$MONOCORE_API_PORT (3456). */
  url?: string;
  /** Bearer token. Default: $MONOCORE_API_TOKEN. */
  token?: string;
  /**
   * The local credential `monocore serve` writes to $MONOCORE_HOME/run/api-local.token.
   * Default: read from that file when the API is on loopback and the file was issued for
   * this very origin; `false` never sends one.
   */
  localToken?: string | false;
  /**
   * Called (once) when nothing listens at the URL (connection refused): makes an
   * API answer and resolves to its URL; the request is then sent again there.
   * The CLI starts its local daemon here.
   */
  onUnreachable?: () => Promise<string>;
  /** Environment read for the defaults (MONOCORE_API_URL, MONOCORE_API_TOKEN, MONOCORE_API_PORT, MONOCORE_HOME). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How errors name the URL setting (default "url / MONOCORE_API_URL"); the CLI says "--api / MONOCORE_API_URL". */
  urlLabel?: string;
  /** Appended to the "cannot reach the monocore API" message (default: how to set the URL). */
  unreachableHint?: string;
  /** TCP connect timeout, ms (default 5000). There is no timeout on answers: exec, waits and streams last as long as they last. */
  connectTimeoutMs?: number;
}

export type Query = Record<string, string | number | boolean | string[] | undefined>;

/** A request body: JSON (any value), or raw bytes / a byte stream with its content type. */
export type RequestBody =
  | { json: unknown }
  | { raw: string | Uint8Array | Readable | AsyncIterable<Uint8Array>; contentType: string; length?: number };

export interface RequestOptions {
  query?: Query;
  body?: RequestBody;
  accept?: string;
  signal?: AbortSignal;
}

export type Response = Dispatcher.ResponseData;

/**
 * HTTP to the monocore API (undici, one connection pool per client): base URL,
 * bearer token and local credential, the API's error body turned back into a
 * MonocoreApiError, a refused connection into MC_API_UNREACHABLE (unless
 * `onUnreachable` brings an API up), answers checked against their zod schema.
 */
export class HttpTransport {
  private base: string;
  private readonly headers: Record<string, string> = {};
  private readonly env: NodeJS.ProcessEnv;
  private readonly onUnreachable: (() => Promise<string>) | undefined;
  private readonly unreachableHint: string;
  private readonly sendLocalToken: boolean;
  private recovery: Promise<void> | undefined;
  private recovered = false;
  /** No timeouts on answers (undici's default 300 s would cut long execs, waits and streams). */
  readonly dispatcher: Dispatcher;

  constructor(options: MonocoreClientOptions = {}) {
    this.env = options.env ?? process.env;
    const label = options.urlLabel ?? 'url / MONOCORE_API_URL';
    const raw = options.url ?? (this.env.MONOCORE_API_URL || defaultApiUrl(this.env));
    const parsed = parseApiUrl(raw, label);
    this.base = raw.replace(/\/+$/, '');
    this.onUnreachable = options.onUnreachable;
    this.unreachableHint = options.unreachableHint ?? '(set the url option or MONOCORE_API_URL)';
    const token = options.token ?? (this.env.MONOCORE_API_TOKEN || undefined);
    if (token) this.headers.authorization = `Bearer ${token}`;
    this.sendLocalToken = options.localToken !== false;
    const local = typeof options.localToken === 'string' ? options.localToken : this.localTokenFor(parsed);
    if (local) this.headers[LOCAL_TOKEN_HEADER] = local;
    this.dispatcher = new Agent({ headersTimeout: 0, bodyTimeout: 0, connectTimeout: options.connectTimeoutMs ?? 5_000 });
  }

  /** The API's base URL (it changes once if `onUnreachable` started an API elsewhere). */
  get url(): string {
    return this.base;
  }

  /** Headers of every request: the token and the local credential. */
  authHeaders(): Record<string, string> {
    return { ...this.headers };
  }

  /** A request whose answer is JSON checked against `schema`. */
  async json<S extends z.ZodType>(schema: S, method: string, path: string, options: RequestOptions = {}): Promise<z.infer<S>> {
    const res = await this.send(method, path, { accept: 'application/json', ...options });
    const text = await res.body.text();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw badResponse(`${method} ${path}`, res.statusCode, `not JSON: ${text.slice(0, 200)}`);
    }
    return parseAnswer(schema, value, `${method} ${path}`, res.statusCode);
  }

  /**
   * Sends a request and answers the response once its status is a success; an
   * error status is thrown as the API's MonocoreApiError. The caller reads (or
   * destroys) the body.
   */
  async send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const res = await this.dispatch(method, path, options);
    if (res.statusCode >= 400) throw await errorFrom(res, method, path);
    return res;
  }

  private unreachable(err: unknown): MonocoreApiError {
    const code = errnoOf(err);
    return new MonocoreApiError(
      'MC_API_UNREACHABLE',
      `cannot reach the monocore API at ${this.base}${code ? ` (${code})` : ''}: is \`monocore serve\` running? ${this.unreachableHint}`,
      { details: { url: this.base, ...(code ? { cause: code } : {}) }, cause: err },
    );
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async dispatch(method: string, path: string, options: RequestOptions): Promise<Response> {
    const beforeRecovery = !this.recovered;
    const { body, signal } = options;
    const headers: Record<string, string> = { ...this.headers };
    if (options.accept) headers.accept = options.accept;
    let payload: Dispatcher.RequestOptions['body'];
    if (body && 'json' in body) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body.json);
    } else if (body) {
      headers['content-type'] = body.contentType;
      if (body.length !== undefined) headers['content-length'] = String(body.length);
      payload = body.raw as Dispatcher.RequestOptions['body'];
    }
    try {
      return await request(`${this.base}${path}${toQueryString(options.query)}`, {
        method: method as Dispatcher.HttpMethod,
        dispatcher: this.dispatcher,
        headers,
        ...(payload !== undefined ? { body: payload } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      // Requests refused before the API came up share one recovery and are sent again
      // (a refused connection never read the body); a refusal after it is an error.
      if (beforeRecovery && errnoOf(err) === 'ECONNREFUSED' && this.onUnreachable) {
        this.recovery ??= this.recover(this.onUnreachable);
        await this.recovery;
        return this.dispatch(method, path, options);
      }
      if (errnoOf(err) !== undefined) throw this.unreachable(err);
      throw err;
    }
  }

  private async recover(onUnreachable: () => Promise<string>): Promise<void> {
    const url = (await onUnreachable()).replace(/\/+$/, '');
    this.base = url;
    // The credential of the API that now answers (a daemon just started wrote a new one).
    const local = this.localTokenFor(new URL(url));
    if (local) this.headers[LOCAL_TOKEN_HEADER] = local;
    else delete this.headers[LOCAL_TOKEN_HEADER];
    this.recovered = true;
  }

  private localTokenFor(url: URL): string | undefined {
    if (!this.sendLocalToken || !isLoopbackHost(url.hostname)) return undefined;
    return readLocalCredential(url.origin, this.env);
  }
}

/** The system error code of a failed connection (ECONNREFUSED, ENOTFOUND, …), also when undici wraps it. */
function errnoOf(err: unknown): string | undefined {
  const own = (err as { code?: unknown }).code;
  const cause = (err as { cause?: { code?: unknown } }).cause?.code;
  const code = typeof own === 'string' && /^E[A-Z]+$/.test(own) ? own : typeof cause === 'string' ? cause : undefined;
  if (code) return code;
  // undici's own connection errors (UND_ERR_CONNECT_TIMEOUT, UND_ERR_SOCKET)
  return typeof own === 'string' && /^UND_ERR_(CONNECT_TIMEOUT|SOCKET)$/.test(own) ? own : undefined;
}

export function toQueryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    params.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** The API's error body as a MonocoreApiError; anything else (a proxy's page) as MC_API_BAD_RESPONSE with its first bytes. */
async function errorFrom(res: Response, method: string, path: string): Promise<MonocoreApiError> {
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = ErrorBodySchema.safeParse(json);
  if (!parsed.success) {
    return new MonocoreApiError('MC_API_BAD_RESPONSE', `the API answered HTTP ${res.statusCode} to ${method} ${path}: ${text.slice(0, 200)}`, {
      status: res.statusCode,
    });
  }
  const body = parsed.data;
  return new MonocoreApiError(body.code, body.message, {
    status: res.statusCode,
    details: body.details,
    issues: body.issues ?? [],
  });
}

function badResponse(context: string, status: number, problem: string): MonocoreApiError {
  return new MonocoreApiError(
    'MC_API_BAD_RESPONSE',
    `the API's answer to ${context} is not what its schema says (${problem}); is it another monocore version?`,
    { status },
  );
}

/** Checks an answer (a body, a stream line, a WebSocket message) against its schema; `context` names it in the error. */
export function parseAnswer<S extends z.ZodType>(schema: S, value: unknown, context: string, status = 0): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const first = r.error.issues[0];
  throw badResponse(context, status, first ? `${first.path.map(String).join('.') || '(root)'}: ${first.message}` : 'invalid');
}

/**
 * Stops reading an answer's body on purpose (a break, an abort, only the headers wanted).
 * Destroying an unfinished body makes undici emit an AbortError on it; nobody reads it any
 * more, so that error is expected and dropped instead of surfacing as an uncaught exception.
 */
export function closeBody(body: NodeJS.ReadableStream & { destroyed?: boolean; destroy(): void }): void {
  if (body.destroyed) return;
  body.on('error', () => undefined);
  body.destroy();
}
