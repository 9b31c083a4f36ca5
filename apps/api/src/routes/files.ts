import { Readable } from 'node:stream';
import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { FILE_HEADERS, FileWriteResultSchema, FilesQuerySchema, TAR } from '@monocore/api-schemas';
import { MonocoreError, type RelayOp } from '@monocore/engine';
import { errorResponses } from '../schemas/common.js';
import type { RouteDeps } from './deps.js';
import { EXEC_TARGETS, targetOf } from './exec-target.js';

/** Default largest upload (MONOCORE_API_MAX_UPLOAD): 1 GiB. */
export const DEFAULT_MAX_UPLOAD = 1 << 30;

const callErrors = { ...errorResponses, 409: errorResponses[400], 410: errorResponses[400], 413: errorResponses[400], 422: errorResponses[400], 503: errorResponses[500] };

const tooLarge = (max: number, what: string): MonocoreError =>
  new MonocoreError('MC_AGENT_FILE_TOO_LARGE', `${what} is larger than the upload limit of ${max} bytes (MONOCORE_API_MAX_UPLOAD); nothing was written`, { maxBytes: max });

/**
 * PUT/GET /sandboxes/:id/files and /services/:name/files (docs/API.md): raw
 * bytes of one file, or a directory as a tar stream (format=tar). Bodies
 * stream through the relay with flow control: neither side ever holds more
 * than a window of the file.
 */
export const filesRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, deps) => {
  const sandboxes = deps.sandboxes!;
  const max = deps.maxUploadBytes ?? DEFAULT_MAX_UPLOAD;
  // In this scope every body is a raw stream (any content type; the JSON parser stays outside).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  for (const t of EXEC_TARGETS) {
    app.put(
      `${t.prefix}/files`,
      {
        schema: {
          summary: `Write a file (or extract a tar into a directory) in a ${t.kind}`,
          description:
            'The raw body becomes the file at `path` (atomically: temp file + rename; parents created; mode and owner applied). ' +
            'With format=tar or Content-Type: application/x-tar the body is a tar stream extracted into the directory `path`. ' +
            'Over MONOCORE_API_MAX_UPLOAD: 413 MC_AGENT_FILE_TOO_LARGE and nothing written.',
          tags: [t.tag],
          params: t.params,
          querystring: FilesQuerySchema,
          consumes: ['application/octet-stream', TAR],
          response: { 200: FileWriteResultSchema, ...callErrors },
        },
      },
      async (request, reply) => {
        const q = request.query;
        const format = q.format ?? ((request.headers['content-type'] ?? '').startsWith(TAR) ? 'tar' : 'raw');
        const declared = Number(request.headers['content-length'] ?? NaN);
        if (Number.isFinite(declared) && declared > max) throw tooLarge(max, `the body (${declared} bytes)`);
        const op: RelayOp =
          format === 'tar'
            ? { op: 'tar-in', path: q.path, maxBytes: max }
            : {
                op: 'write',
                path: q.path,
                maxBytes: max,
                ...(q.mode !== undefined ? { mode: parseInt(q.mode, 8) } : {}),
                ...(q.owner !== undefined ? { owner: q.owner } : {}),
              };
        const call = await sandboxes.call(targetOf(t.kind, request.params), op);
        let finished = false;
        reply.raw.on('close', () => {
          if (!finished) call.close(); // a partial upload is removed in the guest
        });
        try {
          const body = request.body as Readable | undefined;
          let size = 0;
          let over = false;
          if (body) {
            // Relay entries of 1 MiB, not one per 64 KiB HTTP chunk (the file is committed at the end anyway).
            for await (const chunk of body as AsyncIterable<Buffer>) {
              size += chunk.length;
              // Passed on even past the limit: the agent then refuses the file itself and removes its temp file,
              // so the 413 below is answered only once nothing is left in the guest.
              await call.writeBulk(chunk);
              if (size > max) {
                over = true;
                break;
              }
            }
          }
          await call.end();
          const end = await call.result.catch((err: unknown) => {
            if (over) throw tooLarge(max, 'the body');
            throw err;
          });
          if (over) throw tooLarge(max, 'the body');
          return { path: q.path, size: end.size ?? size, format };
        } finally {
          finished = true;
        }
      },
    );

    app.get(
      `${t.prefix}/files`,
      {
        schema: {
          summary: `Read a file (or a directory as tar) from a ${t.kind}`,
          description:
            'The file\'s bytes (application/octet-stream) with x-monocore-file-size, -mode (octal) and -mtime (ms); 404 ' +
            'MC_AGENT_FILE_NOT_FOUND when absent. With format=tar: the directory as a tar stream (application/x-tar).',
          tags: [t.tag],
          params: t.params,
          querystring: FilesQuerySchema,
          produces: ['application/octet-stream', TAR],
          response: { 200: z.unknown().describe('the bytes'), ...callErrors },
        },
      },
      async (request, reply) => {
        const q = request.query;
        const tar = q.format === 'tar';
        const call = await sandboxes.call(targetOf(t.kind, request.params), tar ? { op: 'tar-out', path: q.path } : { op: 'read', path: q.path });
        let finished = false;
        reply.raw.on('close', () => {
          if (!finished) call.close();
        });
        // Missing file, a directory without format=tar…: answered with their own status before any byte.
        const opened = await call.opened.catch((err: unknown) => {
          finished = true;
          throw err;
        });
        if (opened.file) {
          reply.header(FILE_HEADERS.size, String(opened.file.size));
          reply.header(FILE_HEADERS.mode, opened.file.mode.toString(8).padStart(4, '0'));
          reply.header(FILE_HEADERS.mtime, String(opened.file.mtimeMs));
        }
        const body = Readable.from(
          (async function* () {
            try {
              for await (const c of call.output()) yield c.data;
              await call.result;
            } finally {
              finished = true;
            }
          })(),
          { objectMode: false },
        );
        return reply.type(tar ? TAR : 'application/octet-stream').send(body);
      },
    );
  }
};
