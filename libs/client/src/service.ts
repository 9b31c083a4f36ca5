import { StatusResponseSchema } from '@monocore/api-schemas';
import { ExecTarget } from './exec-target.js';
import type { HttpTransport } from './http-transport.js';
import { MonocoreApiError } from './monocore-api-error.js';

/**
 * A service started from monocore.toml, as an exec and files target: the same
 * `exec`, `execStream`, `session` and `files` as a sandbox, run in the
 * service's VM beside its command (`/services/:name/exec`, `…/files`).
 */
export class Service extends ExecTarget {
  /** @internal use client.service(name) */
  constructor(
    http: HttpTransport,
    readonly name: string,
  ) {
    super(http, `/services/${encodeURIComponent(name)}`);
  }

  protected async probe(): Promise<void> {
    const { services } = await this.http.json(StatusResponseSchema, 'GET', '/status', { query: { services: [this.name] } });
    if (!services.some((s) => s.name === this.name)) {
      throw new MonocoreApiError('MC_ORCH_UNKNOWN_SERVICE', `no service named "${this.name}" (see GET /status)`, { status: 404, details: { service: this.name } });
    }
  }
}
