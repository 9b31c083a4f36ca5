import type { OrchestratorApi } from '../orchestrator-port.js';
import type { FastifyRequest } from 'fastify';
import type { RegistryPolicy, SandboxApi } from '@monocore/engine';
import type { PortPolicy } from '../port-policy.js';
import type { VolumePolicy } from '../volume-policy.js';

/** What every route plugin receives from buildApi. */
export interface RouteDeps {
  orchestrator: OrchestratorApi;
  volumePolicy: VolumePolicy;
  /** Host ports REST bodies may publish. */
  portPolicy: PortPolicy;
  /** Registries REST bodies may pull from (checked before enqueueing and again by the puller). */
  registryPolicy: RegistryPolicy;
  /** True for requests from the local CLI (they skip the volume, port and registry policies, like a local config file). */
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
  /** Sandboxes, and exec and files of sandboxes and services (routes registered only when given). */
  sandboxes?: SandboxApi;
  /** Largest file or tar upload, bytes (MONOCORE_API_MAX_UPLOAD, default 1 GiB). */
  maxUploadBytes?: number;
}
