import type { ImageConfig } from './manifest.js';

/** The runtime part of an image config that services, sandboxes and `monocore run` use. */
export interface RuntimeConfig {
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir?: string;
  user?: string;
}

export function runtimeConfig(config: ImageConfig): RuntimeConfig {
  const c = config.config ?? {};
  const out: RuntimeConfig = { env: c.Env ?? [], entrypoint: c.Entrypoint ?? [], cmd: c.Cmd ?? [] };
  if (c.WorkingDir) out.workingDir = c.WorkingDir;
  if (c.User) out.user = c.User;
  return out;
}
