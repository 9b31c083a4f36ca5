import { createHash } from 'node:crypto';
import { MonocoreError } from '../errors/index.js';

/** Only sha256 is accepted: it is what every registry serves and what we store by. */
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** Throws MC_OCI_INVALID_MANIFEST naming `where` when `s` is not a sha256 digest. */
export function assertDigest(s: string, where: string): string {
  if (!isDigest(s)) {
    throw new MonocoreError('MC_OCI_INVALID_MANIFEST', `${where}: "${s}" is not a sha256 digest (sha256:<64 hex>)`, { where, digest: s });
  }
  return s;
}

export function digestHex(digest: string): string {
  return digest.slice('sha256:'.length);
}

export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Throws size/digest mismatch errors for an in-memory blob. */
export function verifyBytes(digest: string, data: Uint8Array, expectedSize: number | undefined, what: string): void {
  if (expectedSize !== undefined && data.byteLength !== expectedSize) {
    throw new MonocoreError('MC_OCI_SIZE_MISMATCH', `${what} ${digest}: expected ${expectedSize} bytes, got ${data.byteLength}`, {
      digest,
      expected: expectedSize,
      actual: data.byteLength,
    });
  }
  const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  if (actual !== digest) {
    throw new MonocoreError('MC_OCI_DIGEST_MISMATCH', `${what} ${digest}: content hashes to ${actual}; it was not stored`, { digest, actual });
  }
}
