// A small loopback HTTP proxy in front of the real test registry that can behave
// like a hostile or flaky network: flip bytes in blobs, cut a download midway,
// or demand bearer tokens from its own token endpoint (counting token requests).
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LoggedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
}

export interface RegistryProxyOptions {
  /** host:port of the real registry. */
  upstream: string;
  /** Flip one byte in the middle of every GET of a blob for which this returns true. */
  corruptBlob?: (digest: string) => boolean;
  /** Close the connection after this many body bytes (n-th GET of a blob, 1-based); undefined = whole body. */
  cutBlobAfter?: (digest: string, attempt: number) => number | undefined;
  /** Answer the first `count` registry requests with `status` (and Retry-After seconds, if given). */
  failFirst?: { count: number; status: number; retryAfter?: number };
  /** Pause this long between forwarded chunks of blob bodies (makes downloads overlap). */
  throttleBlobMs?: number;
  /** Drop Docker-Content-Digest from HEAD answers (some registries omit it). */
  headWithoutDigest?: boolean;
  /** Answer blob GETs with a 307 to the same path on this host:port (like a registry sending clients to a CDN). */
  redirectBlobsTo?: string;
  /** Token auth in front of the registry. */
  auth?: { username?: string; password?: string; expiresIn?: number };
}

export interface RegistryProxy {
  /** host:port to pull through. */
  readonly address: string;
  readonly requests: LoggedRequest[];
  readonly tokenRequests: LoggedRequest[];
  close(): Promise<void>;
}

const BLOB_RE = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/;
const REPO_RE = /^\/v2\/(.+)\/(?:manifests|blobs)\//;

export async function startRegistryProxy(opts: RegistryProxyOptions): Promise<RegistryProxy> {
  const requests: LoggedRequest[] = [];
  const tokenRequests: LoggedRequest[] = [];
  const blobAttempts = new Map<string, number>();
  const tokens = new Map<string, string>(); // token -> scope
  let address = '';
  let failed = 0;

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', `http://${address}`);
    const entry: LoggedRequest = { method: req.method ?? 'GET', path: url.pathname + url.search, headers: req.headers };
    if (url.pathname === '/token') {
      tokenRequests.push(entry);
      const a = opts.auth!;
      if (a.username !== undefined) {
        const expected = `Basic ${Buffer.from(`${a.username}:${a.password ?? ''}`).toString('base64')}`;
        if (req.headers.authorization !== expected) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
          return;
        }
      }
      const token = randomBytes(16).toString('hex');
      tokens.set(token, url.searchParams.get('scope') ?? '');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: a.expiresIn ?? 300 }));
      return;
    }
    requests.push(entry);
    if (opts.auth) {
      const repo = REPO_RE.exec(url.pathname)?.[1];
      const scope = repo ? `repository:${repo}:pull` : '';
      const presented = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const ok = presented !== undefined && tokens.has(presented) && (scope === '' || tokens.get(presented) === scope);
      if (!ok) {
        res
          .writeHead(401, {
            'content-type': 'application/json',
            'www-authenticate': `Bearer realm="http://${address}/token",service="monocore-test"${scope ? `,scope="${scope}"` : ''}`,
          })
          .end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
    }
    if (opts.failFirst && failed < opts.failFirst.count) {
      failed++;
      const h: Record<string, string> = { 'content-type': 'application/json' };
      if (opts.failFirst.retryAfter !== undefined) h['retry-after'] = String(opts.failFirst.retryAfter);
      res.writeHead(opts.failFirst.status, h).end('{"errors":[{"code":"UNAVAILABLE"}]}');
      return;
    }
    const blob = BLOB_RE.exec(url.pathname);
    const digest = blob?.[2];
    let attempt = 0;
    if (digest && req.method === 'GET') {
      attempt = (blobAttempts.get(digest) ?? 0) + 1;
      blobAttempts.set(digest, attempt);
    }
    if (digest && req.method === 'GET' && opts.redirectBlobsTo) {
      res.writeHead(307, { location: `http://${opts.redirectBlobsTo}${url.pathname}` }).end();
      return;
    }
    const headers = { ...req.headers, host: opts.upstream };
    delete headers.authorization;
    const up = httpRequest({ host: opts.upstream.split(':')[0], port: Number(opts.upstream.split(':')[1]), method: req.method, path: url.pathname + url.search, headers }, (ur) => {
      const outHeaders = { ...ur.headers };
      if (opts.headWithoutDigest && req.method === 'HEAD') delete outHeaders['docker-content-digest'];
      res.writeHead(ur.statusCode ?? 502, outHeaders);
      const cutAt = digest && req.method === 'GET' && ur.statusCode !== undefined && ur.statusCode < 300 ? opts.cutBlobAfter?.(digest, attempt) : undefined;
      const corrupt = digest && req.method === 'GET' && ur.statusCode === 200 && opts.corruptBlob?.(digest) === true;
      const total = Number(ur.headers['content-length'] ?? 0);
      let seen = 0;
      ur.on('data', (chunk: Buffer) => {
        let c = chunk;
        if (corrupt) {
          const mid = Math.floor(total / 2);
          if (mid >= seen && mid < seen + c.length) {
            c = Buffer.from(c);
            c[mid - seen] = c[mid - seen]! ^ 0xff;
          }
        }
        if (cutAt !== undefined && seen + c.length >= cutAt) {
          res.write(c.subarray(0, cutAt - seen));
          seen = cutAt;
          ur.destroy();
          // Drop the connection mid-body: end() flushes what was written, then FIN, so the
          // client really holds cutAt bytes (destroy() alone could discard unsent data).
          const sock = res.socket;
          sock?.end();
          setTimeout(() => sock?.destroy(), 500).unref();
          return;
        }
        seen += c.length;
        if (opts.throttleBlobMs && digest) {
          ur.pause();
          res.write(c);
          setTimeout(() => ur.resume(), opts.throttleBlobMs);
          return;
        }
        res.write(c);
      });
      ur.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    get address() {
      return address;
    },
    requests,
    tokenRequests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
