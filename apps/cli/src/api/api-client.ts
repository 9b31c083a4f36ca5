import { readFileSync } from 'node:fs';
import { Agent, request, type Dispatcher } from 'undici';
import { ErrorCodes, MonocoreError, type ErrorCode } from '@monocore/engine/errors';
import { MonocoreHome } from '@monocore/engine/home';
import { defaultApiUrl } from './default-api-url.js';
/** Header of the credential `monocore serve` writes for the local CLI (see apps/api plugins/auth.ts). */
const LOCAL_TOKEN_HEADER = 'x-monocore-local-token';

export interface ApiClientOptions {
  /** Base URL; default $MONOCORE_API_URL or http://127.0.0.1:$MONOCORE_API_PORT (3456). */
  url?: string;
  /** Bearer token; default $MONOCORE_API_TOKEN. */
  token?: string;
  /** The local credential; default: read from MONOCORE_HOME/run/api-local.token when the API is on loopback. */
  localToken?: string;
  /**
   * Called (once) when nothing listens at the URL (connection refused): makes
   * an API answer and resolves to its URL, and the request is sent again there.
   * The CLI passes its local-daemon start here (api/daemon-auto-start.ts).
   */
  onUnreachable?: () => Promise<string>;
}

type Query = Record<string, string | number | boolean | string[] | undefined>;

/**
 * The CLI's HTTP client for the monocore API (undici). Turns the API's error
 * body back into a MonocoreError (same code and message) and a refused
 * connection into "cannot reach the monocore API at …: is `monocore serve` running?"
 * (unless `onUnreachable` brings one up).
 */
export class ApiClient {
  private base: string;
  private readonly headers: Record<string, string>;
  private readonly onUnreachable: (() => Promise<string>) | undefined;
  private recovery: Promise<void> | undefined;
  private recovered = false;
  /** No timeouts on long polls and streams (undici's default 300 s would cut them). */
  private readonly dispatcher: Dispatcher = new Agent({ headersTimeout: 0, bodyTimeout: 0, connectTimeout: 5_000 });

  constructor(options: ApiClientOptions = {}) {
    const env = process.env;
    const raw = options.url ?? (env.MONOCORE_API_URL || defaultApiUrl(env));
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new MonocoreError('MC_USAGE', `--api / MONOCORE_API_URL: "${raw}" is not a URL (e.g. http://127.0.0.1:3456)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new MonocoreError('MC_USAGE', `--api / MONOCORE_API_URL: "${raw}" must be an http:// or https:// URL`);
    }
    this.base = raw.replace(/\/+$/, '');
    this.headers = {};
    this.onUnreachable = options.onUnreachable;
    const token = options.token ?? (env.MONOCORE_API_TOKEN || undefined);
    if (token) this.headers.authorization = `Bearer ${token}`;
    const local = options.localToken ?? (isLoopbackHost(parsed.hostname) ? readLocalToken(parsed.origin) : undefined);
    if (local) this.headers[LOCAL_TOKEN_HEADER] = local;
  }

  get url(): string {
    return this.base;
  }

  async get<T>(path: string, query?: Query): Promise<T> {
    return this.json<T>('GET', path, query, undefined);
  }

  async post<T>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.json<T>('POST', path, query, body);
  }

  /** Opens a streaming GET (logs, events); the caller reads `body` and must destroy it when done. */
  async stream(path: string, query: Query | undefined, accept: string, signal?: AbortSignal): Promise<Dispatcher.ResponseData['body']> {
    const res = await this.send('GET', path, query, undefined, { accept }, signal);
    if (res.statusCode >= 400) throw await this.errorFrom(res);
    return res.body;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async json<T>(method: 'GET' | 'POST', path: string, query: Query | undefined, body: unknown): Promise<T> {
    const res = await this.send(method, path, query, body, { accept: 'application/json' });
    if (res.statusCode >= 400) throw await this.errorFrom(res);
    return (await res.body.json()) as T;
  }

  private async send(
    method: 'GET' | 'POST',
    path: string,
    query: Query | undefined,
    body: unknown,
    extra: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<Dispatcher.ResponseData> {
    const beforeRecovery = !this.recovered;
    try {
      return await request(`${this.base}${path}${toQueryString(query)}`, {
        method,
        dispatcher: this.dispatcher,
        headers: { ...this.headers, ...extra, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      const code = (err as { code?: string }).code ?? (err as { cause?: { code?: string } }).cause?.code;
      // Requests refused before the API came up share one recovery and are sent again; a refusal after it is an error.
      if (code === 'ECONNREFUSED' && this.onUnreachable && beforeRecovery) {
        this.recovery ??= this.recover(this.onUnreachable);
        await this.recovery;
        return this.send(method, path, query, body, extra, signal);
      }
      throw new MonocoreError(
        'MC_API_UNREACHABLE',
        `cannot reach the monocore API at ${this.base}${code ? ` (${code})` : ''}: is \`monocore serve\` running? (set --api or MONOCORE_API_URL)`,
        { url: this.base, ...(code ? { cause: code } : {}) },
        { cause: err },
      );
    }
  }

  private async recover(onUnreachable: () => Promise<string>): Promise<void> {
    const url = (await onUnreachable()).replace(/\/+$/, '');
    this.base = url;
    // The credential of the API that now answers (a daemon just started wrote a new one).
    const origin = new URL(url).origin;
    const local = isLoopbackHost(new URL(url).hostname) ? readLocalToken(origin) : undefined;
    if (local) this.headers[LOCAL_TOKEN_HEADER] = local;
    else delete this.headers[LOCAL_TOKEN_HEADER];
    this.recovered = true;
  }

  private async errorFrom(res: Dispatcher.ResponseData): Promise<MonocoreError> {
    const text = await res.body.text();
    let parsed: { code?: string; message?: string; details?: Record<string, unknown> } | undefined;
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    const code: ErrorCode = parsed?.code && parsed.code in ErrorCodes ? (parsed.code as ErrorCode) : 'MC_INTERNAL';
    const message = parsed?.message ?? `the API answered HTTP ${res.statusCode}: ${text.slice(0, 200)}`;
    return new MonocoreError(code, message, { ...(parsed?.details ?? {}), httpStatus: res.statusCode });
  }
}

function toQueryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    params.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

/**
 * The credential `monocore serve` wrote for the local CLI, only when it was
 * issued for this very API origin: it is never sent to another local listener.
 */
function readLocalToken(origin: string): string | undefined {
  try {
    const saved = JSON.parse(readFileSync(new MonocoreHome().apiLocalTokenPath, 'utf8')) as { url?: unknown; token?: unknown };
    if (typeof saved.url !== 'string' || typeof saved.token !== 'string') return undefined;
    return new URL(saved.url).origin === origin ? saved.token : undefined;
  } catch {
    return undefined;
  }
}
