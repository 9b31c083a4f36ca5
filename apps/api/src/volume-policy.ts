import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, posix, resolve } from 'node:path';
import { MonocoreError } from '@monocore/engine';

/**
 * Host paths in volumes are a capability: a config that mounts `/` or `/root`
 * gives untrusted guest code the host. A config author running the CLI on a
 * local file is trusted (it is their machine), but anyone who can reach the
 * REST API is only trusted as far as the operator allows: REST bodies may
 * name host paths only under MONOCORE_API_VOLUME_ROOTS (none by default, so
 * a REST body with any host volume is rejected).
 */
export class VolumePolicy {
  readonly roots: string[];

  constructor(roots: string[]) {
    this.roots = roots.map((r) => {
      if (!isAbsolute(r)) throw new MonocoreError('MC_USAGE', `allowed volume root "${r}" must be an absolute path`);
      return canonical(r);
    });
  }

  /** Parses MONOCORE_API_VOLUME_ROOTS: paths separated by ":" or ",". */
  static fromEnv(value: string | undefined): VolumePolicy {
    const roots = (value ?? '').split(/[:,]/).map((s) => s.trim()).filter((s) => s.length > 0);
    return new VolumePolicy(roots);
  }

  allows(hostPath: string): boolean {
    if (!isAbsolute(hostPath)) return false;
    const lexical = posix.normalize(hostPath);
    const real = canonical(lexical);
    return this.roots.some((root) => within(root, lexical) && within(root, real));
  }

  /**
   * Checks every host path a config body names; throws MC_API_VOLUME_NOT_ALLOWED
   * listing each offending field (`service[0].volumes[1]`, `group[0].volume[0].path`).
   */
  check(config: unknown): void {
    const issues: Array<{ path: string; message: string }> = [];
    const rootsText = this.roots.length === 0
      ? 'no host volumes are allowed over REST (set MONOCORE_API_VOLUME_ROOTS on the API server, or use the CLI with a local file)'
      : `allowed roots: ${this.roots.join(', ')}`;
    const verify = (field: string, hostPath: string): void => {
      if (!this.allows(hostPath)) issues.push({ path: field, message: `host path "${hostPath}" is not allowed: ${rootsText}` });
    };
    const obj = asRecord(config);
    asArray(obj?.service).forEach((svc, i) => {
      const s = asRecord(svc);
      asArray(s?.volumes).forEach((v, j) => {
        if (typeof v === 'string') verify(`service[${i}].volumes[${j}]`, v.split(':')[0] ?? v);
        else if (asRecord(v) && typeof asRecord(v)?.host === 'string') verify(`service[${i}].volumes[${j}].host`, asRecord(v)?.host as string);
      });
      asArray(s?.group_volumes).forEach((v, j) => {
        const path = asRecord(v)?.path;
        // A relative host side lives under the group volume's base, which is checked below.
        if (typeof path === 'string' && path.startsWith('/')) verify(`service[${i}].group_volumes[${j}].path`, path.split(':')[0] ?? path);
      });
    });
    asArray(obj?.group).forEach((grp, i) => {
      asArray(asRecord(grp)?.volume).forEach((v, j) => {
        const path = asRecord(v)?.path;
        if (typeof path === 'string') verify(`group[${i}].volume[${j}].path`, path);
      });
    });
    if (issues.length > 0) {
      throw new MonocoreError(
        'MC_API_VOLUME_NOT_ALLOWED',
        `${issues.length} host volume path(s) not allowed in a REST body: ${issues.map((x) => x.path).join(', ')}`,
        { issues, allowedRoots: this.roots },
      );
    }
  }
}

function within(root: string, path: string): boolean {
  return root === '/' || path === root || path.startsWith(`${root}/`);
}

/** realpath of the longest existing prefix, so a symlink inside a root cannot point outside it. */
function canonical(path: string): string {
  const p = resolve(path);
  try {
    return realpathSync(p);
  } catch {
    const parent = dirname(p);
    if (parent === p) return p;
    return posix.join(canonical(parent), p.slice(parent.length + (parent.endsWith('/') ? 0 : 1)));
  }
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
