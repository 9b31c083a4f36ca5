import type { Readable } from 'node:stream';
import { FILE_HEADERS, FileWriteResultSchema, TAR, type FileWriteResult } from '@monocore/api-schemas';
import { closeBody, type HttpTransport } from './http-transport.js';
import { extractDirectory, packDirectory } from './local-tar.js';
import { MonocoreApiError } from './monocore-api-error.js';

/** What a file upload takes: text (UTF-8), bytes, or a byte stream of any size. */
export type FileData = string | Uint8Array | Readable | AsyncIterable<Uint8Array>;

export interface WriteFileOptions {
  /** Permission bits: a number (0o755) or octal text ("755", "0644"). Default 0644. */
  mode?: number | string;
  /** Owner in the guest: name, uid, name:group or uid:gid. Default root. */
  owner?: string;
  signal?: AbortSignal;
}

/** A guest file being read: its bytes as a stream, and its metadata in the guest. */
export interface FileReadStream {
  stream: Readable;
  /** Size in bytes, permission bits, modification time (ms since the epoch), when the API sent them. */
  size?: number;
  mode?: number;
  mtimeMs?: number;
}

/** What is at a guest path. */
export type GuestPathKind = 'file' | 'directory' | 'missing' | 'other';

/**
 * The files of a sandbox or a service (`PUT/GET …/files`): one file as raw
 * bytes, or a directory as a tar stream. Paths are absolute guest paths.
 * Writes are atomic in the guest (temp file, then rename) and create parents.
 */
export class GuestFiles {
  constructor(
    private readonly http: HttpTransport,
    /** `/sandboxes/:id` or `/services/:name` */
    private readonly base: string,
  ) {}

  /** Writes one file. */
  async write(path: string, data: FileData, options: WriteFileOptions = {}): Promise<FileWriteResult> {
    const mode = options.mode === undefined ? undefined : typeof options.mode === 'number' ? options.mode.toString(8).padStart(4, '0') : options.mode;
    const raw = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    return this.http.json(FileWriteResultSchema, 'PUT', `${this.base}/files`, {
      query: { path, mode, owner: options.owner },
      body: { raw, contentType: 'application/octet-stream', ...(raw instanceof Uint8Array ? { length: raw.length } : {}) },
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** Reads one file into memory. A missing file is MC_AGENT_FILE_NOT_FOUND (404). */
  async read(path: string, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const { stream } = await this.readStream(path, options);
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    return Buffer.concat(parts);
  }

  /** Reads one file as UTF-8 text. */
  async readText(path: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    return (await this.read(path, options)).toString('utf8');
  }

  /** Opens one file for reading as a stream (any size; nothing is held in memory). Destroy the stream to stop early. */
  async readStream(path: string, options: { signal?: AbortSignal } = {}): Promise<FileReadStream> {
    const res = await this.http.send('GET', `${this.base}/files`, {
      query: { path },
      accept: 'application/octet-stream',
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const num = (name: string, radix = 10): number | undefined => {
      const v = res.headers[name];
      const n = typeof v === 'string' ? parseInt(v, radix) : NaN;
      return Number.isFinite(n) ? n : undefined;
    };
    const size = num(FILE_HEADERS.size);
    const mode = num(FILE_HEADERS.mode, 8);
    const mtimeMs = num(FILE_HEADERS.mtime);
    return {
      stream: res.body as unknown as Readable,
      ...(size !== undefined ? { size } : {}),
      ...(mode !== undefined ? { mode } : {}),
      ...(mtimeMs !== undefined ? { mtimeMs } : {}),
    };
  }

  /** Extracts a tar stream into the guest directory `dir` (created if missing). */
  async writeTar(dir: string, tar: Uint8Array | Readable | AsyncIterable<Uint8Array>, options: { signal?: AbortSignal } = {}): Promise<FileWriteResult> {
    return this.http.json(FileWriteResultSchema, 'PUT', `${this.base}/files`, {
      query: { path: dir, format: 'tar' },
      body: { raw: tar, contentType: TAR, ...(tar instanceof Uint8Array ? { length: tar.length } : {}) },
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** The guest directory `dir` as a tar stream (entries relative to it: `./a`, `./sub/b`). */
  async readTar(dir: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    const res = await this.http.send('GET', `${this.base}/files`, {
      query: { path: dir, format: 'tar' },
      accept: TAR,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return res.body as unknown as Readable;
  }

  /** Copies the contents of a local directory into the guest directory `dir` (created if missing). */
  async uploadDir(localDir: string, dir: string, options: { signal?: AbortSignal } = {}): Promise<FileWriteResult> {
    return this.writeTar(dir, packDirectory(localDir), options);
  }

  /**
   * Copies the contents of the guest directory `dir` into a local directory
   * (created if missing). The archive comes from the guest and is treated as
   * hostile: nothing is written outside `localDir`, devices, FIFOs and hard
   * links are skipped (listed in `skipped`).
   */
  async downloadDir(dir: string, localDir: string, options: { signal?: AbortSignal } = {}): Promise<{ entries: number; skipped: string[] }> {
    return extractDirectory(await this.readTar(dir, options), localDir);
  }

  /**
   * What is at a guest path: a file, a directory, nothing, or something else
   * (a device, a FIFO). Asks the files route for the path and stops reading at
   * the headers.
   */
  async kind(path: string, options: { signal?: AbortSignal } = {}): Promise<GuestPathKind> {
    try {
      const { stream } = await this.readStream(path, options);
      closeBody(stream);
      return 'file';
    } catch (err) {
      if (!(err instanceof MonocoreApiError)) throw err;
      if (err.code === 'MC_AGENT_FILE_NOT_FOUND') return 'missing';
      if (err.code === 'MC_AGENT_FILE_ERROR') return err.details.errno === 'EISDIR' ? 'directory' : 'other';
      throw err;
    }
  }
}

