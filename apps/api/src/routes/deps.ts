import type { OrchestratorApi } from '../orchestrator-port.js';
import type { FastifyRequest } from 'fastify';
import type { VolumePolicy } from '../volume-policy.js';

/** What every route plugin receives from buildApi. */
export interface RouteDeps {
  orchestrator: OrchestratorApi;
  volumePolicy: VolumePolicy;
  /** True for requests from the local CLI (they skip the volume policy, like a local config file). */
  isLocal: (request: FastifyRequest) => boolean;
  /** Throws MC_CONFIG_INVALID listing every issue. */
  validateConfig: (config: unknown) => void;
  /**
   * Id of the newest event in the engine's stream. /events pins its start with it
   * BEFORE answering, so a client that subscribes and then posts /up misses nothing.
   */
  lastEventId?: () => Promise<string>;
  /** Upper bound for wait=true (and the default when no timeout is given), ms. */
  maxWaitMs: number;
}
