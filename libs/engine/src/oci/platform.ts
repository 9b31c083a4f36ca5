import { MonocoreError } from '../errors/index.js';
import type { Descriptor } from './manifest.js';

/** An OCI platform; images monocore boots are always Linux, even on a macOS host. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const NODE_ARCH_TO_OCI: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

/** The platform of this host as OCI names it: linux/<arch>[/variant]. */
export function hostPlatform(): Platform {
  const architecture = NODE_ARCH_TO_OCI[process.arch] ?? process.arch;
  const p: Platform = { os: 'linux', architecture };
  if (architecture === 'arm64') p.variant = 'v8';
  return p;
}

/** Parses "os/arch[/variant]" (e.g. linux/amd64, linux/arm64/v8). */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/i.test(p))) {
    throw new MonocoreError('MC_OCI_INVALID_PLATFORM', `platform "${s}": expected "os/arch" or "os/arch/variant" (e.g. linux/amd64)`, { platform: s });
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  const p: Platform = { os: os.toLowerCase(), architecture: normalizeArch(architecture.toLowerCase()) };
  if (variant) p.variant = variant.toLowerCase();
  return p;
}

function normalizeArch(a: string): string {
  if (a === 'x86_64' || a === 'x86-64') return 'amd64';
  if (a === 'aarch64') return 'arm64';
  return a;
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/**
 * Whether an image of platform `candidate` satisfies `wanted`. arm64 without a
 * variant is arm64/v8 (as containerd normalises it); a wanted platform without
 * a variant accepts any variant.
 */
export function platformMatches(wanted: Platform, candidate: Platform): boolean {
  if (wanted.os !== candidate.os.toLowerCase()) return false;
  if (wanted.architecture !== normalizeArch(candidate.architecture.toLowerCase())) return false;
  if (!wanted.variant) return true;
  const cv = candidate.variant?.toLowerCase() ?? (wanted.architecture === 'arm64' ? 'v8' : undefined);
  return cv === wanted.variant;
}

/** Attestations (BuildKit provenance/SBOM) are listed in indexes as unknown/unknown entries. */
export function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] !== undefined || (d.platform?.os === 'unknown' && d.platform.architecture === 'unknown');
}

/**
 * Picks the manifest for `wanted` from an index's entries, preferring an exact
 * variant match. Throws MC_OCI_NO_MATCHING_PLATFORM listing what is available.
 */
export function selectPlatform(manifests: Descriptor[], wanted: Platform, what: string): Descriptor {
  const candidates = manifests.filter((d) => !isAttestation(d) && d.platform !== undefined);
  const matching = candidates.filter((d) => platformMatches(wanted, d.platform!));
  const exact = matching.find((d) => (d.platform!.variant ?? '') === (wanted.variant ?? ''));
  const chosen = exact ?? matching[0];
  if (chosen) return chosen;
  const available = [...new Set(candidates.map((d) => formatPlatform(d.platform!)))];
  throw new MonocoreError(
    'MC_OCI_NO_MATCHING_PLATFORM',
    `${what}: no image for platform ${formatPlatform(wanted)}; available: ${available.length > 0 ? available.join(', ') : '(none)'} (choose one with --platform)`,
    { wanted: formatPlatform(wanted), available },
  );
}
