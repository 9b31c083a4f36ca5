import { MonocoreError } from '@monocore/engine';

/**
 * Host ports a REST caller may publish. A published port is a listening socket
 * on the operator's host: a REST body must not take 22, 53, 80 or 443 from the
 * operator's own daemons (or answer in their place once they restart). So REST
 * bodies may only use the ranges in MONOCORE_API_PORTS, by default the
 * unprivileged 1024-65535. The local CLI (a config file on the operator's
 * machine) is not limited.
 */
export class PortPolicy {
  static readonly DEFAULT = '1024-65535';
  readonly ranges: ReadonlyArray<readonly [number, number]>;

  constructor(ranges: ReadonlyArray<readonly [number, number]>) {
    this.ranges = ranges;
  }

  /** Parses MONOCORE_API_PORTS: ports and ranges separated by "," (`8000-9000,3000`); default 1024-65535. */
  static fromEnv(value: string | undefined): PortPolicy {
    const text = value === undefined || value.trim() === '' ? PortPolicy.DEFAULT : value;
    const ranges = text
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0)
      .map((item): [number, number] => {
        const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item);
        const lo = Number(m?.[1]);
        const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
        if (!m || lo < 1 || hi > 65535 || lo > hi) {
          throw new MonocoreError('MC_USAGE', `MONOCORE_API_PORTS: "${item}" is not a port or a range like 8000-9000 (1..65535)`, { item });
        }
        return [lo, hi];
      });
    return new PortPolicy(ranges);
  }

  allows(port: number): boolean {
    return this.ranges.some(([lo, hi]) => port >= lo && port <= hi);
  }

  describe(): string {
    return this.ranges.map(([lo, hi]) => (lo === hi ? String(lo) : `${lo}-${hi}`)).join(',');
  }

  /** Checks every `service[i].port` of a config body; throws MC_API_PORT_NOT_ALLOWED naming each field. */
  check(config: unknown): void {
    const issues: Array<{ path: string; message: string }> = [];
    const services = (config as { service?: unknown } | null)?.service;
    (Array.isArray(services) ? services : []).forEach((svc: unknown, i) => {
      const port = (svc as { port?: unknown } | null)?.port;
      if (typeof port !== 'string') return;
      const host = Number(port.split(':')[0]);
      if (Number.isInteger(host) && !this.allows(host)) {
        issues.push({
          path: `service[${i}].port`,
          message: `host port ${host} may not be published over REST (allowed: ${this.describe()}; set MONOCORE_API_PORTS on the API server, or use the CLI with a local file)`,
        });
      }
    });
    if (issues.length > 0) {
      throw new MonocoreError(
        'MC_API_PORT_NOT_ALLOWED',
        `${issues.length} host port(s) not allowed in a REST body: ${issues.map((x) => `${x.path}: ${x.message}`).join('; ')}`,
        { issues, allowed: this.describe() },
      );
    }
  }
}
