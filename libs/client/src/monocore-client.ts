import {
  DeploymentOutcomeSchema,
  DownResultSchema,
  HealthSchema,
  HostsResponseSchema,
  SandboxListSchema,
  SandboxSchema,
  StateEventSchema,
  StatusResponseSchema,
  UpResultSchema,
  type CreateSandboxRequest,
  type DeploymentOutcome,
  type DownResult,
  type Health,
  type HostStatus,
  type SandboxStatus,
  type Sandbox as SandboxRecord,
  type Selection,
  type ServiceStatus,
  type StateEvent,
  type UpResult,
} from '@monocore/api-schemas';
import { HttpTransport, closeBody, parseAnswer, type MonocoreClientOptions } from './http-transport.js';
import { MonocoreApiError } from './monocore-api-error.js';
import { Sandbox } from './sandbox.js';
import { Service } from './service.js';
import { readSse } from './sse-reader.js';

export interface UpOptions {
  /** Only this group (and what it depends on). */
  group?: string;
  /** Only these services (and what they depend on). */
  services?: string[];
  /** Answer only once every selected service is running or has failed (default: at once, with the plan). */
  wait?: boolean;
  /** With wait: seconds to wait at most (1-3600). */
  timeout?: number;
  signal?: AbortSignal;
}

export interface StopOptions extends Selection {
  /** Answer only once every selected service has stopped. */
  wait?: boolean;
  /** With wait: seconds to wait at most (1-3600). */
  timeout?: number;
  signal?: AbortSignal;
}

export interface LogsOptions {
  stream?: 'stdout' | 'stderr';
  /** The last N lines (default 100). */
  tail?: number;
  /** Keep going with new lines until `signal` aborts. */
  follow?: boolean;
  signal?: AbortSignal;
}

export interface EventsOptions {
  /** Resume after this event id ("0": everything still retained); default: only new events. */
  since?: string;
  /** Only events of these services. */
  services?: string[];
  /** Only events of this deployment. */
  deployment?: string;
  /** The stream is endless: abort to stop. */
  signal?: AbortSignal;
}

/**
 * The monocore API from TypeScript: services (`up`, `down`, `remove`,
 * `status`, `logs`, `events`, `waitFor`, `hosts`), sandboxes
 * (`createSandbox`, `getSandbox`, `listSandboxes`; or the `Sandbox` class) and
 * exec/files in services (`service(name)`). Every answer is checked against
 * the zod schema the API itself validates with (@monocore/api-schemas); every
 * failure is a MonocoreApiError with the API's code.
 *
 * Defaults come from the environment: MONOCORE_API_URL (else
 * http://127.0.0.1:$MONOCORE_API_PORT, 3456), MONOCORE_API_TOKEN, and the local
 * credential of `monocore serve` in $MONOCORE_HOME/run/api-local.token.
 * `close()` ends its connections.
 */
export class MonocoreClient {
  /** @internal */
  readonly http: HttpTransport;
  private static sharedClient: MonocoreClient | undefined;

  constructor(options: MonocoreClientOptions = {}) {
    this.http = new HttpTransport(options);
  }

  /** The client the `Sandbox` static methods use when given none: made once from the environment. */
  static shared(): MonocoreClient {
    MonocoreClient.sharedClient ??= new MonocoreClient();
    return MonocoreClient.sharedClient;
  }

  get url(): string {
    return this.http.url;
  }

  async close(): Promise<void> {
    await this.http.close();
    if (MonocoreClient.sharedClient === this) MonocoreClient.sharedClient = undefined;
  }

  // --- services ------------------------------------------------------------------

  /**
   * Starts services from a configuration (the model of monocore.toml as an
   * object: `{service: [...], group: [...]}`). An invalid one is
   * MC_CONFIG_INVALID with every issue in `issues`.
   */
  async up(config: object, options: UpOptions = {}): Promise<UpResult> {
    const { signal, ...rest } = options;
    const hasOptions = Object.values(rest).some((v) => v !== undefined);
    return this.http.json(UpResultSchema, 'POST', '/up', { body: { json: hasOptions ? { config, ...rest } : config }, ...(signal ? { signal } : {}) });
  }

  /** Stops services, dependents first: every service, a group or named services. */
  async down(options: StopOptions = {}): Promise<DownResult> {
    return this.stop('down', options);
  }

  /** Stops services if needed, then deletes their writable layer and state. */
  async remove(options: StopOptions = {}): Promise<DownResult> {
    return this.stop('remove', options);
  }

  /** Every service (or a group, named ones, some statuses) with its actual and desired state. */
  async status(filter: { group?: string; services?: string[]; status?: string[]; signal?: AbortSignal } = {}): Promise<ServiceStatus[]> {
    const { signal, ...query } = filter;
    return (await this.http.json(StatusResponseSchema, 'GET', '/status', { query, ...(signal ? { signal } : {}) })).services;
  }

  /** Waits until a deployment settles (every service running/failed/blocked, or stopped for down/remove). */
  async waitFor(deploymentId: string, options: { timeout?: number; signal?: AbortSignal } = {}): Promise<DeploymentOutcome> {
    return this.http.json(DeploymentOutcomeSchema, 'GET', `/deployments/${encodeURIComponent(deploymentId)}/wait`, {
      query: { timeout: options.timeout },
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /**
   * A service's output, line by line (without the newline): the last `tail`
   * lines, then with `follow` every new line until `signal` aborts. Resolves
   * once the API answered (an unknown service is MC_ORCH_UNKNOWN_SERVICE here);
   * iterate the result to read.
   */
  async logs(service: string, options: LogsOptions = {}): Promise<AsyncGenerator<string>> {
    const res = await this.http.send('GET', `/services/${encodeURIComponent(service)}/logs`, {
      query: { stream: options.stream ?? 'stdout', tail: options.tail, follow: options.follow === true },
      accept: 'text/plain',
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return (async function* lines() {
      const decoder = new TextDecoder();
      let partial = '';
      try {
        for await (const chunk of res.body) {
          partial += decoder.decode(chunk as Uint8Array, { stream: true });
          const lines = partial.split('\n');
          partial = lines.pop() ?? '';
          yield* lines;
        }
        partial += decoder.decode();
        if (partial !== '') yield partial;
      } catch (err) {
        if (!options.signal?.aborted) throw err;
      } finally {
        closeBody(res.body);
      }
    })();
  }

  /**
   * Live state events (service transitions, deployments, hosts) until `signal`
   * aborts. Resolves once subscribed: an action taken after that (an `up`) has
   * all its events in the stream. Iterate the result to read.
   */
  async events(options: EventsOptions = {}): Promise<AsyncGenerator<StateEvent>> {
    const res = await this.http.send('GET', '/events', {
      query: { since: options.since, services: options.services, deployment: options.deployment },
      accept: 'text/event-stream',
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return (async function* events() {
      try {
        for await (const ev of readSse(res.body)) {
          if (ev.event === 'error') {
            const e = parseErrorEvent(ev.data);
            throw new MonocoreApiError(e.code, e.message);
          }
          if (ev.event !== 'state') continue;
          let value: unknown;
          try {
            value = JSON.parse(ev.data);
          } catch {
            throw new MonocoreApiError('MC_API_BAD_RESPONSE', `an event of GET /events is not JSON: ${ev.data.slice(0, 200)}`);
          }
          yield parseAnswer(StateEventSchema, value, 'an event of GET /events');
        }
      } catch (err) {
        if (!options.signal?.aborted) throw err;
      } finally {
        closeBody(res.body);
      }
    })();
  }

  /** Every worker host: capacity, free resources, backend, heartbeat. */
  async hosts(options: { signal?: AbortSignal } = {}): Promise<HostStatus[]> {
    return (await this.http.json(HostsResponseSchema, 'GET', '/hosts', options.signal ? { signal: options.signal } : {})).hosts;
  }

  /** GET /healthz: resolves when the API and its Redis answer. */
  async health(options: { signal?: AbortSignal } = {}): Promise<Health> {
    return this.http.json(HealthSchema, 'GET', '/healthz', options.signal ? { signal: options.signal } : {});
  }

  /** A service as an exec and files target (`exec`, `execStream`, `session`, `files`). */
  service(name: string): Service {
    return new Service(this.http, name);
  }

  // --- sandboxes -----------------------------------------------------------------

  /** Creates a sandbox; resolves once it accepts commands (or at once, `creating`, with wait: false). */
  async createSandbox(request: CreateSandboxRequest, options: { wait?: boolean; signal?: AbortSignal } = {}): Promise<Sandbox> {
    const info = await this.http.json(SandboxSchema, 'POST', '/sandboxes', {
      body: { json: request },
      query: { wait: options.wait === false ? 'false' : undefined },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return new Sandbox(this.http, info);
  }

  /** One sandbox by id; unknown (or ended longer ago than the retention period): MC_SANDBOX_NOT_FOUND. */
  async getSandbox(id: string, options: { signal?: AbortSignal } = {}): Promise<Sandbox> {
    const info = await this.http.json(SandboxSchema, 'GET', `/sandboxes/${encodeURIComponent(id)}`, options.signal ? { signal: options.signal } : {});
    return new Sandbox(this.http, info);
  }

  /** Every sandbox, oldest first (ended ones during the retention period); `status` filters. */
  async listSandboxes(filter: { status?: SandboxStatus[] } = {}, options: { signal?: AbortSignal } = {}): Promise<Sandbox[]> {
    const { sandboxes } = await this.http.json(SandboxListSchema, 'GET', '/sandboxes', {
      query: { status: filter.status },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return sandboxes.map((info) => new Sandbox(this.http, info));
  }

  /** Deletes a sandbox by id (what `sandbox.kill()` does); idempotent; resolves with the final record. */
  async deleteSandbox(id: string, options: { signal?: AbortSignal } = {}): Promise<SandboxRecord> {
    return this.http.json(SandboxSchema, 'DELETE', `/sandboxes/${encodeURIComponent(id)}`, options.signal ? { signal: options.signal } : {});
  }

  private async stop(action: 'down' | 'remove', options: StopOptions): Promise<DownResult> {
    const { wait, timeout, signal, ...selection } = options;
    return this.http.json(DownResultSchema, 'POST', `/${action}`, {
      body: { json: selection },
      query: { wait: wait === true ? true : undefined, timeout: wait === true ? timeout : undefined },
      ...(signal ? { signal } : {}),
    });
  }
}

function parseErrorEvent(data: string): { code: string; message: string } {
  try {
    const e = JSON.parse(data) as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string' && typeof e.message === 'string') return { code: e.code, message: e.message };
  } catch {
    // not JSON: reported below
  }
  return { code: 'MC_API_BAD_RESPONSE', message: `the event stream failed: ${data.slice(0, 200)}` };
}
