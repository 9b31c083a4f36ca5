import { MonocoreError } from '../errors/index.js';

/**
 * An OCI image reference, normalised the way Docker does it (the grammar of
 * distribution/reference): `alpine` → `docker.io/library/alpine:latest`,
 * `user/app:1` → `docker.io/user/app:1`, `localhost:5000/x:y` keeps its registry.
 *
 * When neither a tag nor a digest is given the tag defaults to `latest`; when only
 * a digest is given there is no tag (the digest alone names the content).
 */
export class ImageReference {
  constructor(
    /** Registry host, with port when given: `docker.io`, `ghcr.io`, `127.0.0.1:15000`. */
    readonly registry: string,
    /** Repository path inside the registry: `library/alpine`, `o/r`. */
    readonly repository: string,
    readonly tag?: string,
    /** `algorithm:hex`, e.g. `sha256:<64 hex>`. */
    readonly digest?: string,
  ) {}

  /** What a registry's manifest endpoint takes: the digest when pinned, else the tag. */
  get reference(): string {
    return this.digest ?? this.tag ?? 'latest';
  }

  /** `registry/repository` without tag or digest. */
  get name(): string {
    return `${this.registry}/${this.repository}`;
  }

  toString(): string {
    return `${this.name}${this.tag !== undefined ? `:${this.tag}` : ''}${this.digest !== undefined ? `@${this.digest}` : ''}`;
  }
}

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';
/** distribution/reference's NameTotalLengthMax. */
export const MAX_IMAGE_NAME_LENGTH = 255;

// distribution/reference grammar, anchored.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6_HOST = /^\[[a-fA-F0-9:.]+\]$/;
/** Known digest algorithms and the exact hex length each must have. */
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

function invalid(input: string, why: string): MonocoreError {
  return new MonocoreError('MC_OCI_INVALID_REFERENCE', `invalid image reference "${input}": ${why}`, {
    reference: input,
    reason: why,
  });
}

/** A registry component counts as a host when it has a `.` or `:` or is `localhost` (Docker's rule). */
function looksLikeRegistry(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

function checkRegistry(input: string, registry: string): void {
  let host = registry;
  let port: string | undefined;
  if (registry.startsWith('[')) {
    const end = registry.indexOf(']');
    host = end < 0 ? registry : registry.slice(0, end + 1);
    const rest = end < 0 ? '' : registry.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw invalid(input, `registry "${registry}" is not host[:port]`);
      port = rest.slice(1);
    }
    if (!IPV6_HOST.test(host)) throw invalid(input, `registry "${registry}" has a malformed IPv6 address`);
  } else {
    const colon = registry.indexOf(':');
    if (colon >= 0) {
      host = registry.slice(0, colon);
      port = registry.slice(colon + 1);
    }
    if (host === '' || !host.split('.').every((label) => DOMAIN_LABEL.test(label))) {
      throw invalid(input, `registry host "${host}" is not a valid host name or address`);
    }
  }
  if (port !== undefined) {
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
      throw invalid(input, `registry port "${port}" must be a number in 1..65535`);
    }
  }
}

function checkDigest(input: string, digest: string): void {
  const m = DIGEST.exec(digest);
  if (!m) throw invalid(input, `digest "${digest}" is not algorithm:hex`);
  const algorithm = m[1] ?? '';
  const hex = m[2] ?? '';
  const expected = DIGEST_HEX_LENGTH[algorithm];
  if (expected !== undefined) {
    if (!/^[a-f0-9]+$/.test(hex) || hex.length !== expected) {
      throw invalid(input, `${algorithm} digest must be ${expected} lowercase hex characters`);
    }
  } else if (!/^[a-fA-F0-9]{32,}$/.test(hex)) {
    throw invalid(input, `digest "${digest}" must have at least 32 hex characters`);
  }
}

/**
 * Parses and normalises an image reference. Throws `MC_OCI_INVALID_REFERENCE`
 * with a message naming what is wrong (registry, repository component, tag, digest).
 */
export function parseImageReference(input: string): ImageReference {
  if (typeof input !== 'string' || input.length === 0) throw invalid(String(input), 'must not be empty');
  if (input.trim() !== input || /\s/.test(input)) throw invalid(input, 'must not contain whitespace');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkDigest(input, digest);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) {
      throw invalid(input, `tag "${tag}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
    }
  }

  if (rest === '') throw invalid(input, 'repository name is missing');
  const components = rest.split('/');
  let registry = DEFAULT_REGISTRY;
  if (components.length > 1 && looksLikeRegistry(components[0] ?? '')) {
    registry = components.shift() ?? '';
    checkRegistry(input, registry);
  }
  if (registry === 'index.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && components.length === 1) components.unshift('library');

  for (const component of components) {
    if (component === '') throw invalid(input, 'repository has an empty path component');
    if (!PATH_COMPONENT.test(component)) {
      const why = /[A-Z]/.test(component)
        ? `repository component "${component}" must be lowercase`
        : `repository component "${component}" must match [a-z0-9]+ separated by ".", "_", "__" or "-"`;
      throw invalid(input, why);
    }
  }
  const repository = components.join('/');
  if (registry.length + 1 + repository.length > MAX_IMAGE_NAME_LENGTH) {
    throw invalid(input, `name is longer than ${MAX_IMAGE_NAME_LENGTH} characters`);
  }
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return new ImageReference(registry, repository, tag, digest);
}
