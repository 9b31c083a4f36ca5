import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { MonocoreError } from '../errors/index.js';
import type {
  DeploymentOutcome,
  DownOptions,
  DownResult,
  EventsOptions,
  JobTuning,
  LogsOptions,
  OrchestratorApi,
  OrchestratorOptions,
  RemoveOptions,
  Selector,
  ServiceStatus,
  StateEvent,
  UpOptions,
  UpResult,
} from './orchestrator-api.js';

export const DEFAULT_JOB_TUNING: JobTuning = {
  startAttempts: 3,
  startBackoffMs: 1000,
  pullAttempts: 3,
  pullBackoffMs: 2000,
  gatePollMs: 2000,
};

/**
 * The engine API the REST layer calls: validates, plans, places and enqueues
 * flows; reads state, events and logs from Redis. Holds no state of its own.
 */
export class Orchestrator implements OrchestratorApi {
  readonly redis: Redis;
  readonly logger: Logger;
  readonly tuning: JobTuning;
  readonly #ownsConnection: boolean;

  constructor(options: OrchestratorOptions) {
    if (options.connection) {
      this.redis = options.connection;
      this.#ownsConnection = false;
    } else if (options.redisUrl) {
      // Producers fail fast while Redis is down instead of queueing commands in memory.
      this.redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: true });
      this.#ownsConnection = true;
    } else {
      throw new MonocoreError('MC_USAGE', 'Orchestrator needs `connection` or `redisUrl`', {});
    }
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.tuning = { ...DEFAULT_JOB_TUNING, ...options.jobs };
  }

  async up(_config: unknown, _options: UpOptions = {}): Promise<UpResult> {
    throw new MonocoreError('MC_NOT_IMPLEMENTED', 'Orchestrator.up is being implemented');
  }

  async down(_options: DownOptions = {}): Promise<DownResult> {
    throw new MonocoreError('MC_NOT_IMPLEMENTED', 'Orchestrator.down is being implemented');
  }

  async remove(_options: RemoveOptions = {}): Promise<DownResult> {
    throw new MonocoreError('MC_NOT_IMPLEMENTED', 'Orchestrator.remove is being implemented');
  }

  async status(_selector: Selector = {}): Promise<ServiceStatus[]> {
    throw new MonocoreError('MC_NOT_IMPLEMENTED', 'Orchestrator.status is being implemented');
  }

  // eslint-disable-next-line require-yield
  async *events(_options: EventsOptions = {}): AsyncIterable<StateEvent> {
    throw new MonocoreError('MC_NOT_IMPLEMENTED', 'Orchestrator.events is being implemented');
  }

  // eslint-disable-next-line require-yield
  async *logs(_service: string, _options: LogsOptions): AsyncIterable<string> {
    throw new MonocoreError('MC_NOT_IMPLEMENTED', 'Orchestrator.logs is being implemented');
  }

  async waitFor(_deploymentId: string, _options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<DeploymentOutcome> {
    throw new MonocoreError('MC_NOT_IMPLEMENTED', 'Orchestrator.waitFor is being implemented');
  }

  async close(): Promise<void> {
    if (this.#ownsConnection) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
