import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { MonocoreError, isMonocoreError } from '../errors/index.js';
import { VERSION } from '../version.js';
import type { IngestWriter } from './content-store.js';
import { isDigest, verifyBytes } from './digest.js';
import { MANIFEST_ACCEPT } from './media-types.js';
import type { Descriptor } from './manifest.js';
import type { RegistryPolicy } from './registry-policy.js';
import { defaultCredentialsResolver, normalizeRegistryHost, type CredentialsResolver, type RegistryCredentials } from './registry-credentials.js';

/** A repository on a registry, as parseImageReference returns it (registry "docker.io" for Docker Hub). */
export interface RepositoryRef {
  registry: string;
  repository: string;
}

export interface RegistryClientOptions {
  /** Registry host → mirror base URLs tried in order before the registry itself. */
  mirrors?: Record<string, string[]>;
  /** Hosts (host[:port]) that may be reached over plain HTTP. Loopback always may. */
  insecureRegistries?: string[];
  /** Explicit credentials (e.g. from the monocore config), by registry host. */
  credentials?: Record<string, RegistryCredentials>;
  /** Overrides how credentials are found (default: explicit, MONOCORE_REGISTRY_AUTH, ~/.docker/config.json). */
  credentialsResolver?: CredentialsResolver;
  /** Attempts per request for network errors, 5xx and 429 (default 5). */
  maxAttempts?: number;
  /** First backoff delay; doubles each attempt with jitter (default 200 ms). */
  retryBaseMs?: number;
  /** Longest single backoff or honoured Retry-After (default 10 s). */
  retryMaxMs?: number;
  connectTimeoutMs?: number;
  /** Time to the response headers (default 30 s). */
  headersTimeoutMs?: number;
  /** Longest silence while reading a body (default 30 s). */
  bodyTimeoutMs?: number;
  /** Largest manifest or config we accept in memory (default 8 MiB). */
  maxManifestBytes?: number;
  dispatcher?: Dispatcher;
  /**
   * Checks every address this client connects to (after DNS, on redirects and token
   * realms) against a registry policy; the mirrors configured here are exempt (they
   * are the operator's). Used for pulls that a REST caller asked for. Ignored when
   * `dispatcher` is given.
   */
  policy?: RegistryPolicy;
}

export interface ManifestResponse {
  digest: string;
  mediaType: string | undefined;
  bytes: Buffer;
}

export interface ManifestHead {
  digest: string;
  mediaType: string | undefined;
  size: number | undefined;
}

export interface BlobFetchOptions {
  signal?: AbortSignal;
  /** Called as bytes arrive with the total accepted so far (including resumed bytes). */
  onBytes?: (done: number) => void;
}

interface Endpoint {
  /** e.g. "https://registry-1.docker.io" or "http://127.0.0.1:5000" (no trailing slash). */
  base: string;
  /** Host whose credentials and tokens apply. */
  authHost: string;
  mirror: boolean;
}

interface Challenge {
  scheme: 'bearer' | 'basic';
  params: Record<string, string>;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Result of one request attempt sequence; the body must be consumed or dumped by the caller. */
type Response = Dispatcher.ResponseData;

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** Parses `Bearer realm="...",service="...",scope="..."` (and Basic). Quoted values may contain commas. */
export function parseWwwAuthenticate(header: string): Challenge | undefined {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'basic') return undefined;
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2] ?? '')) !== null) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme, params };
}

export function isLoopbackHost(host: string): boolean {
  const h = hostOnly(host);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1';
  return false;
}

function hostOnly(hostPort: string): string {
  if (hostPort.startsWith('[')) return hostPort.slice(1, hostPort.indexOf(']'));
  const parts = hostPort.split(':');
  return parts.length === 2 ? parts[0]! : hostPort;
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function parseRetryAfter(v: string | undefined): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

const TLS_CODE = /^(ERR_TLS|ERR_SSL|CERT_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_|ERR_OSSL)/;

function errCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return '';
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return signal?.aborted === true || (err as Error)?.name === 'AbortError';
}

async function readLimited(body: Dispatcher.ResponseData['body'], limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    n += (chunk as Buffer).byteLength;
    if (n > limit) {
      body.destroy();
      throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${what}: larger than the ${limit}-byte limit for manifests and configs`, { what, limit });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, n);
}

/**
 * A client for the OCI distribution API (v2) on undici. One instance caches
 * bearer tokens per registry and scope until they expire, so share it.
 * Retries network errors, 5xx and 429 with exponential backoff (honouring
 * Retry-After); 4xx other than 408/429 fail at once with a specific code.
 */
export class RegistryClient {
  private readonly opts: Required<Omit<RegistryClientOptions, 'dispatcher' | 'credentials' | 'credentialsResolver' | 'mirrors' | 'insecureRegistries' | 'policy'>>;
  private readonly mirrors: Map<string, string[]>;
  private readonly insecure: Set<string>;
  private readonly credentials: CredentialsResolver;
  private readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: boolean;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pendingTokens = new Map<string, Promise<CachedToken>>();
  /** Auth scheme each host asked for last time, so later requests skip the 401 round trip. */
  private readonly challenges = new Map<string, Challenge>();
  /** Which endpoint last served each repository (mirrors first, then upstream). */
  private readonly pinned = new Map<string, number>();
  /** Count of token requests made (observable by tests and diagnostics). */
  tokenRequests = 0;

  constructor(options: RegistryClientOptions = {}) {
    this.opts = {
      maxAttempts: options.maxAttempts ?? 5,
      retryBaseMs: options.retryBaseMs ?? 200,
      retryMaxMs: options.retryMaxMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      headersTimeoutMs: options.headersTimeoutMs ?? 30_000,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 30_000,
      maxManifestBytes: options.maxManifestBytes ?? 8 << 20,
    };
    this.mirrors = new Map(Object.entries(options.mirrors ?? {}).map(([k, v]) => [normalizeRegistryHost(k), v.map((u) => u.replace(/\/+$/, ''))]));
    this.insecure = new Set((options.insecureRegistries ?? []).map((h) => normalizeRegistryHost(h)));
    this.credentials = options.credentialsResolver ?? defaultCredentialsResolver(options.credentials ?? {});
    this.ownDispatcher = options.dispatcher === undefined;
    const mirrorHosts = [...this.mirrors.values()].flat().map((u) => new URL(u).host);
    this.dispatcher =
      options.dispatcher ??
      new Agent({
        connect: options.policy
          ? options.policy.connector({ timeout: this.opts.connectTimeoutMs, exempt: mirrorHosts })
          : { timeout: this.opts.connectTimeoutMs },
        headersTimeout: this.opts.headersTimeoutMs,
        bodyTimeout: this.opts.bodyTimeoutMs,
        keepAliveTimeout: 4_000,
      });
    for (const [host, urls] of this.mirrors) for (const u of urls) this.checkPlainHttp(u, `mirror of ${host}`);
  }

  /**
   * Builds a client from the environment: MONOCORE_REGISTRY_MIRRORS
   * ("docker.io=http://127.0.0.1:5000,ghcr.io=https://m.example"; a registry may
   * appear several times), MONOCORE_INSECURE_REGISTRIES ("host:port,host2"),
   * merged with `options` (mirror lists and insecure hosts add up; explicit
   * credentials win over MONOCORE_REGISTRY_AUTH and docker's config.json).
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, options: RegistryClientOptions = {}): RegistryClient {
    const mirrors: Record<string, string[]> = {};
    for (const item of (env.MONOCORE_REGISTRY_MIRRORS ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const eq = item.indexOf('=');
      if (eq <= 0 || !/^https?:\/\/[^/]/.test(item.slice(eq + 1))) {
        throw new MonocoreError('MC_USAGE', `MONOCORE_REGISTRY_MIRRORS: "${item}" is not "registry=http(s)://host[:port]"`, { item });
      }
      const host = normalizeRegistryHost(item.slice(0, eq));
      (mirrors[host] ??= []).push(item.slice(eq + 1));
    }
    const insecure = (env.MONOCORE_INSECURE_REGISTRIES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const resolverOpts: RegistryClientOptions = {
      ...options,
      mirrors: mergeMirrors(mirrors, options.mirrors ?? {}),
      insecureRegistries: [...insecure, ...(options.insecureRegistries ?? [])],
    };
    if (!options.credentialsResolver) resolverOpts.credentialsResolver = defaultCredentialsResolver(options.credentials ?? {}, env);
    return new RegistryClient(resolverOpts);
  }

  async close(): Promise<void> {
    if (this.ownDispatcher) await this.dispatcher.close();
  }

  // ---- endpoints -------------------------------------------------------------

  private checkPlainHttp(url: string, what: string): void {
    const u = new URL(url);
    if (u.protocol === 'http:' && !isLoopbackHost(u.host) && !this.insecure.has(normalizeRegistryHost(u.host))) {
      throw new MonocoreError(
        'MC_OCI_INSECURE_REGISTRY',
        `${what}: refusing plain HTTP to ${u.host}; list it in MONOCORE_INSECURE_REGISTRIES (or the config's insecure registries) to allow it`,
        { host: u.host },
      );
    }
  }

  private endpoints(registry: string): Endpoint[] {
    const host = normalizeRegistryHost(registry);
    const out: Endpoint[] = (this.mirrors.get(host) ?? []).map((base) => ({ base, authHost: normalizeRegistryHost(new URL(base).host), mirror: true }));
    if (host === 'docker.io') {
      out.push({ base: 'https://registry-1.docker.io', authHost: 'docker.io', mirror: false });
    } else {
      const plain = isLoopbackHost(host) || this.insecure.has(host);
      out.push({ base: `${plain ? 'http' : 'https'}://${host}`, authHost: host, mirror: false });
    }
    return out;
  }

  /**
   * Runs `fn` against each endpoint of the registry (mirrors first), moving on
   * when an endpoint is unreachable, refuses us, or lacks the content. The
   * endpoint that answered is remembered for the repository.
   */
  private async withEndpoints<T>(ref: RepositoryRef, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const eps = this.endpoints(ref.registry);
    const key = `${normalizeRegistryHost(ref.registry)}/${ref.repository}`;
    const start = this.pinned.get(key) ?? 0;
    const order = [...eps.slice(start), ...eps.slice(0, start)];
    let lastErr: unknown;
    for (let i = 0; i < order.length; i++) {
      const ep = order[i]!;
      try {
        const r = await fn(ep);
        this.pinned.set(key, eps.indexOf(ep));
        return r;
      } catch (err) {
        lastErr = err;
        const last = i === order.length - 1;
        if (last || !ep.mirror || !isMonocoreError(err)) throw err;
        if (err.code === 'MC_OCI_DIGEST_MISMATCH' || err.code === 'MC_OCI_SIZE_MISMATCH' || err.code === 'MC_OCI_INSECURE_REGISTRY') throw err;
        // A mirror that is down, empty or refusing us: fall through to the next endpoint.
      }
    }
    throw lastErr;
  }

  // ---- low-level request with auth, retries, redirects -------------------------

  private tokenKey(authHost: string, scope: string, creds: RegistryCredentials | undefined): string {
    return `${authHost}|${scope}|${creds ? createHash('sha256').update(`${creds.username}\0${creds.password}`).digest('hex').slice(0, 16) : 'anon'}`;
  }

  private async authHeader(ep: Endpoint, ref: RepositoryRef, fresh: boolean): Promise<string | undefined> {
    const ch = this.challenges.get(ep.authHost);
    if (!ch) return undefined;
    const creds = this.credentials(ep.authHost);
    if (ch.scheme === 'basic') {
      return creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : undefined;
    }
    const scope = `repository:${ref.repository}:pull`;
    const key = this.tokenKey(ep.authHost, scope, creds);
    const cached = this.tokens.get(key);
    if (!fresh && cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    let pending = this.pendingTokens.get(key);
    if (!pending) {
      pending = this.fetchToken(ep, ch, scope, creds).finally(() => this.pendingTokens.delete(key));
      this.pendingTokens.set(key, pending);
    }
    const t = await pending;
    this.tokens.set(key, t);
    return `Bearer ${t.token}`;
  }

  private async fetchToken(ep: Endpoint, ch: Challenge, scope: string, creds: RegistryCredentials | undefined): Promise<CachedToken> {
    const realm = ch.params.realm;
    if (!realm) throw new MonocoreError('MC_OCI_REGISTRY_ERROR', `${ep.base}: bearer challenge without a realm`, { registry: ep.authHost });
    const url = new URL(realm);
    this.checkPlainHttp(url.href, `token service of ${ep.authHost}`);
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = { 'user-agent': `monocore/${VERSION}` };
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    this.tokenRequests++;
    const res = await this.retrying(`token ${url.origin}${url.pathname}`, undefined, () =>
      request(url, { method: 'GET', headers, dispatcher: this.dispatcher }),
    );
    if (res.statusCode === 401 || res.statusCode === 403) {
      await res.body.dump();
      throw new MonocoreError(
        'MC_OCI_UNAUTHORIZED',
        `${ep.authHost}: the token service refused ${creds ? `the credentials of "${creds.username}"` : 'anonymous access'} for ${scope}`,
        { registry: ep.authHost, scope, status: res.statusCode },
      );
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new MonocoreError('MC_OCI_REGISTRY_ERROR', `${ep.authHost}: token service answered HTTP ${res.statusCode}`, { registry: ep.authHost, status: res.statusCode });
    }
    const body = (await readLimited(res.body, 1 << 20, 'token response')).toString('utf8');
    let json: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      json = JSON.parse(body) as typeof json;
    } catch {
      throw new MonocoreError('MC_OCI_REGISTRY_ERROR', `${ep.authHost}: token service answered non-JSON`, { registry: ep.authHost });
    }
    const token = typeof json.token === 'string' ? json.token : typeof json.access_token === 'string' ? json.access_token : undefined;
    if (!token) throw new MonocoreError('MC_OCI_REGISTRY_ERROR', `${ep.authHost}: token response has no "token"`, { registry: ep.authHost });
    // The spec's default lifetime is 60 s; refresh 10 s early, never cache below 5 s.
    const lifetime = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 60;
    return { token, expiresAt: Date.now() + Math.max(5, lifetime - 10) * 1000 };
  }

  /** Retries `send` on network errors, 5xx, 408 and 429 with backoff. Returns the first other response. */
  private async retrying(what: string, signal: AbortSignal | undefined, send: () => Promise<Response>): Promise<Response> {
    let lastProblem = '';
    let gotResponse = false;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      let waitMs: number | undefined;
      try {
        const res = await send();
        if (!RETRY_STATUS.has(res.statusCode)) return res;
        gotResponse = true;
        lastProblem = `HTTP ${res.statusCode}`;
        waitMs = parseRetryAfter(headerString(res.headers['retry-after']));
        await res.body.dump().catch(() => undefined);
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        if (isMonocoreError(err, 'MC_OCI_REGISTRY_REFUSED')) {
          throw new MonocoreError('MC_OCI_REGISTRY_REFUSED', `${what}: ${err.message}`, err.details, { cause: err });
        }
        if (isMonocoreError(err)) throw err;
        const code = errCode(err);
        if (TLS_CODE.test(code)) {
          throw new MonocoreError('MC_OCI_REGISTRY_UNREACHABLE', `${what}: TLS failed (${code}: ${(err as Error).message})`, { code }, { cause: err });
        }
        lastProblem = `${code || (err as Error).name}: ${(err as Error).message}`;
      }
      if (attempt >= this.opts.maxAttempts) {
        throw new MonocoreError(
          gotResponse ? 'MC_OCI_TOO_MANY_RETRIES' : 'MC_OCI_REGISTRY_UNREACHABLE',
          `${what}: failed after ${attempt} attempts (last: ${lastProblem})`,
          { attempts: attempt, last: lastProblem },
        );
      }
      await this.backoff(attempt, waitMs, signal);
    }
  }

  private async backoff(attempt: number, retryAfterMs: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    const exp = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** (attempt - 1));
    const jittered = exp / 2 + Math.random() * (exp / 2);
    const ms = retryAfterMs !== undefined ? Math.min(this.opts.retryMaxMs, Math.max(retryAfterMs, jittered)) : jittered;
    await sleep(ms, undefined, signal ? { signal } : undefined);
  }

  /**
   * One logical request to `path` on `ep`: attaches auth (answering one 401
   * challenge), follows redirects (dropping Authorization when the origin
   * changes) and retries transient failures.
   */
  private async send(
    ep: Endpoint,
    ref: RepositoryRef,
    method: 'GET' | 'HEAD',
    path: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<Response> {
    let authRetried = false;
    for (;;) {
      const auth = await this.authHeader(ep, ref, authRetried);
      let url = new URL(`${ep.base}/v2/${path}`);
      let res: Response | undefined;
      for (let hop = 0; ; hop++) {
        const h: Record<string, string> = { 'user-agent': `monocore/${VERSION}`, ...headers };
        if (auth && url.origin === new URL(ep.base).origin) h.authorization = auth;
        this.checkPlainHttp(url.href, what);
        const target = url;
        res = await this.retrying(what, signal, () => request(target, { method, headers: h, dispatcher: this.dispatcher, signal }));
        const location = headerString(res.headers.location);
        if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304 && location) {
          await res.body.dump();
          if (hop >= 5) throw new MonocoreError('MC_OCI_REGISTRY_ERROR', `${what}: more than 5 redirects`, {});
          url = new URL(location, url);
          continue;
        }
        break;
      }
      if (res.statusCode === 401) {
        const ch = parseWwwAuthenticate(headerString(res.headers['www-authenticate']) ?? '');
        await res.body.dump();
        const creds = this.credentials(ep.authHost);
        if (!authRetried && ch && (ch.scheme === 'bearer' || creds)) {
          this.challenges.set(ep.authHost, ch);
          authRetried = true;
          continue;
        }
        throw new MonocoreError(
          'MC_OCI_UNAUTHORIZED',
          `${what}: ${ep.authHost} refused ${creds ? `the credentials of "${creds.username}"` : 'anonymous access'} (HTTP 401)${creds ? '' : '; log in via ~/.docker/config.json or MONOCORE_REGISTRY_AUTH'}`,
          { registry: ep.authHost, repository: ref.repository, status: 401 },
        );
      }
      if (res.statusCode === 403) {
        await res.body.dump();
        throw new MonocoreError('MC_OCI_UNAUTHORIZED', `${what}: ${ep.authHost} denied access (HTTP 403)`, {
          registry: ep.authHost,
          repository: ref.repository,
          status: 403,
        });
      }
      return res;
    }
  }

  private async unexpected(res: Response, what: string): Promise<never> {
    const text = (await readLimited(res.body, 64 << 10, what).catch(() => Buffer.alloc(0))).toString('utf8').slice(0, 300);
    throw new MonocoreError('MC_OCI_REGISTRY_ERROR', `${what}: unexpected HTTP ${res.statusCode}${text ? `: ${text}` : ''}`, { status: res.statusCode });
  }

  // ---- API ---------------------------------------------------------------------

  /** GET /v2/ on the registry (or its first mirror); resolves when reachable and authorised. */
  async ping(registry: string, signal?: AbortSignal): Promise<void> {
    const ep = this.endpoints(registry)[0]!;
    const res = await this.retrying(`ping ${ep.base}`, signal, () =>
      request(`${ep.base}/v2/`, { method: 'GET', dispatcher: this.dispatcher, signal, headers: { 'user-agent': `monocore/${VERSION}` } }),
    );
    await res.body.dump();
    if (res.statusCode === 200 || res.statusCode === 401) return;
    throw new MonocoreError('MC_OCI_REGISTRY_ERROR', `ping ${ep.base}/v2/: unexpected HTTP ${res.statusCode}`, { status: res.statusCode });
  }

  /** HEAD a manifest: its digest without its body (what a warm pull needs). */
  async headManifest(ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestHead> {
    const what = `manifest ${ref.registry}/${ref.repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    return this.withEndpoints(ref, async (ep) => {
      const res = await this.send(ep, ref, 'HEAD', `${ref.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, signal, what);
      await res.body.dump();
      if (res.statusCode === 404) throw notFound(what, ref, reference);
      const digest = headerString(res.headers['docker-content-digest']);
      if (res.statusCode === 405 || (res.statusCode === 200 && (!digest || !isDigest(digest)))) {
        // Some registries omit the digest on HEAD (or refuse HEAD): fall back to GET and hash the body.
        const m = await this.getManifestFrom(ep, ref, reference, signal, what);
        return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.byteLength };
      }
      if (res.statusCode !== 200 || !digest) return this.unexpected(res, what);
      if (isDigest(reference) && digest !== reference) {
        throw new MonocoreError('MC_OCI_DIGEST_MISMATCH', `${what}: registry reports digest ${digest}`, { digest: reference, actual: digest });
      }
      const len = headerString(res.headers['content-length']);
      return { digest, mediaType: headerString(res.headers['content-type'])?.split(';')[0], size: len ? Number(len) : undefined };
    });
  }

  /** GET a manifest or index by tag or digest, verifying its digest. */
  async getManifest(ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestResponse> {
    const what = `manifest ${ref.registry}/${ref.repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    return this.withEndpoints(ref, (ep) => this.getManifestFrom(ep, ref, reference, signal, what));
  }

  private async getManifestFrom(ep: Endpoint, ref: RepositoryRef, reference: string, signal: AbortSignal | undefined, what: string): Promise<ManifestResponse> {
    const res = await this.send(ep, ref, 'GET', `${ref.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, signal, what);
    if (res.statusCode === 404) {
      await res.body.dump();
      throw notFound(what, ref, reference);
    }
    if (res.statusCode !== 200) return this.unexpected(res, what);
    const bytes = await readLimited(res.body, this.opts.maxManifestBytes, what);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const claimed = headerString(res.headers['docker-content-digest']);
    const expected = isDigest(reference) ? reference : claimed && isDigest(claimed) ? claimed : undefined;
    if (expected !== undefined && expected !== digest) {
      throw new MonocoreError('MC_OCI_DIGEST_MISMATCH', `${what}: body hashes to ${digest}, expected ${expected}; it was not stored`, {
        digest: expected,
        actual: digest,
      });
    }
    return { digest, mediaType: headerString(res.headers['content-type'])?.split(';')[0], bytes };
  }

  /** GET a small blob (an image config) into memory, verifying size and digest. */
  async getBlobBytes(ref: RepositoryRef, desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
    const what = `blob ${ref.registry}/${ref.repository}@${desc.digest}`;
    if (desc.size > this.opts.maxManifestBytes) {
      throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${what}: ${desc.size} bytes is over the ${this.opts.maxManifestBytes}-byte limit for configs`, {
        digest: desc.digest,
      });
    }
    return this.withEndpoints(ref, async (ep) => {
      const res = await this.send(ep, ref, 'GET', `${ref.repository}/blobs/${desc.digest}`, {}, signal, what);
      if (res.statusCode === 404) {
        await res.body.dump();
        throw new MonocoreError('MC_OCI_BLOB_NOT_FOUND', `${what}: not found on ${ep.base}`, { digest: desc.digest, repository: ref.repository });
      }
      if (res.statusCode !== 200) return this.unexpected(res, what);
      const bytes = await readLimited(res.body, this.opts.maxManifestBytes, what);
      verifyBytes(desc.digest, bytes, desc.size, what);
      return bytes;
    });
  }

  /**
   * Streams a blob into `writer`, resuming from `writer.offset` with a Range
   * request after a dropped connection (and for an ingest left by an earlier
   * run). Bytes are hashed by the writer as they arrive; the caller commits.
   */
  async fetchBlob(ref: RepositoryRef, desc: Descriptor, writer: IngestWriter, options: BlobFetchOptions = {}): Promise<void> {
    const what = `blob ${ref.registry}/${ref.repository}@${desc.digest}`;
    await this.withEndpoints(ref, async (ep) => {
      let failures = 0;
      let lastProblem = '';
      for (;;) {
        options.signal?.throwIfAborted();
        if (writer.offset === desc.size) return;
        const offset = writer.offset;
        const headers: Record<string, string> = {};
        if (offset > 0) headers.range = `bytes=${offset}-`;
        const res = await this.send(ep, ref, 'GET', `${ref.repository}/blobs/${desc.digest}`, headers, options.signal, what);
        if (res.statusCode === 404) {
          await res.body.dump();
          throw new MonocoreError('MC_OCI_BLOB_NOT_FOUND', `${what}: not found on ${ep.base}`, { digest: desc.digest, repository: ref.repository });
        }
        if (res.statusCode === 416) {
          await res.body.dump();
          await writer.reset();
          continue;
        }
        if (res.statusCode === 200 && offset > 0) {
          await writer.reset(); // the server ignored Range: start over
        } else if (res.statusCode === 206) {
          const m = /^bytes (\d+)-/.exec(headerString(res.headers['content-range']) ?? '');
          if (!m || Number(m[1]) !== offset) {
            await res.body.dump();
            await writer.reset();
            continue;
          }
        } else if (res.statusCode !== 200) {
          return this.unexpected(res, what);
        }
        const before = writer.offset;
        try {
          for await (const chunk of res.body) {
            await writer.write(chunk as Buffer);
            options.onBytes?.(writer.offset);
          }
        } catch (err) {
          if (isAbort(err, options.signal) || isMonocoreError(err)) {
            res.body.destroy();
            throw err;
          }
          lastProblem = `${errCode(err) || (err as Error).name}: ${(err as Error).message}`;
        }
        if (writer.offset === desc.size) return;
        if (!lastProblem) lastProblem = `connection closed after ${writer.offset} of ${desc.size} bytes`;
        // Progress resets the failure budget: a flaky link that keeps delivering finishes.
        failures = writer.offset > before ? 1 : failures + 1;
        if (failures >= this.opts.maxAttempts) {
          throw new MonocoreError('MC_OCI_TOO_MANY_RETRIES', `${what}: download kept failing at ${writer.offset} of ${desc.size} bytes (last: ${lastProblem})`, {
            digest: desc.digest,
            done: writer.offset,
            total: desc.size,
          });
        }
        await this.backoff(failures, undefined, options.signal);
        lastProblem = '';
      }
    });
  }
}

/** Mirrors from both sources, the environment's first, each URL once. */
function mergeMirrors(a: Record<string, string[]>, b: Record<string, string[]>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const src of [a, b]) {
    for (const [host, urls] of Object.entries(src)) {
      const k = normalizeRegistryHost(host);
      out[k] = [...new Set([...(out[k] ?? []), ...urls])];
    }
  }
  return out;
}

function notFound(what: string, ref: RepositoryRef, reference: string): MonocoreError {
  return new MonocoreError('MC_OCI_MANIFEST_NOT_FOUND', `${what}: not found (no such repository, tag or digest)`, {
    registry: ref.registry,
    repository: ref.repository,
    reference,
  });
}
