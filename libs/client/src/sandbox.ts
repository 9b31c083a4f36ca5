import {
  ForkSandboxResponseSchema,
  SandboxSchema,
  type CreateSandboxRequest,
  type Sandbox as SandboxRecord,
  type SandboxStatus,
} from '@monocore/api-schemas';
import { ExecTarget } from './exec-target.js';
import type { HttpTransport } from './http-transport.js';
import { MonocoreClient } from './monocore-client.js';

export interface SandboxCallOptions {
  /** The client to use (default: one made from the environment, shared by these static calls). */
  client?: MonocoreClient;
  signal?: AbortSignal;
}

export interface CreateSandboxOptions extends SandboxCallOptions {
  /** Default true: resolve once the sandbox accepts commands; false: at once, with status `creating`. */
  wait?: boolean;
}

/**
 * A sandbox: a long-lived microVM made for interaction. Create one, run many
 * commands in it (`exec`, `execStream`, `session`), move files in and out
 * (`files`), and throw it away (`kill`).
 *
 * ```ts
 * const sandbox = await Sandbox.create({ image: 'python:3.12-slim', timeout_s: 600 });
 * const r = await sandbox.exec(['python', '-c', 'print(6 * 7)']);
 * await sandbox.kill();
 *
 * // Outbound access limited to an allow-list (docs/NETWORK.md "Allow-lists"):
 * await Sandbox.create({ image: 'python:3.12-slim', network: { outbound: true, allow: ['pypi.org', '*.pythonhosted.org'] } });
 * ```
 */
export class Sandbox extends ExecTarget {
  /** The sandbox as the API last described it (refreshed by `refresh()`, `kill()`). */
  info: SandboxRecord;

  /** @internal use Sandbox.create/get or client.sandbox(id) */
  constructor(http: HttpTransport, info: SandboxRecord) {
    super(http, `/sandboxes/${encodeURIComponent(info.id)}`);
    this.info = info;
  }

  get id(): string {
    return this.info.id;
  }

  get status(): SandboxStatus {
    return this.info.status;
  }

  /** Creates a sandbox: places it, pulls its image, boots it; resolves once it accepts commands. */
  static async create(request: CreateSandboxRequest, options: CreateSandboxOptions = {}): Promise<Sandbox> {
    return (options.client ?? MonocoreClient.shared()).createSandbox(request, options);
  }

  /** One sandbox by id (ended ones too, during the retention period); unknown: MC_SANDBOX_NOT_FOUND. */
  static async get(id: string, options: SandboxCallOptions = {}): Promise<Sandbox> {
    return (options.client ?? MonocoreClient.shared()).getSandbox(id, options);
  }

  /** Every sandbox, oldest first; `status` filters. */
  static async list(filter: { status?: SandboxStatus[] } = {}, options: SandboxCallOptions = {}): Promise<Sandbox[]> {
    return (options.client ?? MonocoreClient.shared()).listSandboxes(filter, options);
  }

  /** Reads the sandbox's record again (status, last activity, why it ended). */
  async refresh(options: { signal?: AbortSignal } = {}): Promise<SandboxRecord> {
    this.info = await this.http.json(SandboxSchema, 'GET', this.base, options.signal ? { signal: options.signal } : {});
    return this.info;
  }

  /**
   * Deletes the sandbox (DELETE): kills its VM, deletes its disk, releases its
   * lease. Idempotent; resolves with the final record.
   */
  async kill(options: { signal?: AbortSignal } = {}): Promise<SandboxRecord> {
    this.info = await this.http.json(SandboxSchema, 'DELETE', this.base, options.signal ? { signal: options.signal } : {});
    return this.info;
  }

  /**
   * Pauses the sandbox: its VM is saved to its host's disk and its QEMU ends (no host memory
   * used) until `resume()`. Exec and files fail with 409 meanwhile. Idempotent.
   */
  async pause(options: { signal?: AbortSignal } = {}): Promise<SandboxRecord> {
    this.info = await this.http.json(SandboxSchema, 'POST', `${this.base}/pause`, options.signal ? { signal: options.signal } : {});
    return this.info;
  }

  /** Resumes a paused sandbox on its host: its processes go on where they were. Idempotent. */
  async resume(options: { signal?: AbortSignal } = {}): Promise<SandboxRecord> {
    this.info = await this.http.json(SandboxSchema, 'POST', `${this.base}/resume`, options.signal ? { signal: options.signal } : {});
    return this.info;
  }

  /**
   * Forks the sandbox: `count` new sandboxes (default 1) whose memory, processes and files
   * continue from this one's at one instant, each with its own disk and identity.
   */
  async fork(options: { count?: number; signal?: AbortSignal } = {}): Promise<Sandbox[]> {
    const { sandboxes } = await this.http.json(ForkSandboxResponseSchema, 'POST', `${this.base}/fork`, {
      body: { json: { count: options.count ?? 1 } },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return sandboxes.map((info) => new Sandbox(this.http, info));
  }

  protected async probe(): Promise<void> {
    await this.refresh();
  }
}

