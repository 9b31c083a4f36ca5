/**
 * The content-addressed blob store contract (like containerd's core/content):
 * blobs are addressed by sha256 digest, written through an ingest that is
 * verified before it becomes visible, and never modified once committed.
 * local-content-store.ts implements it on the local filesystem.
 */

export interface BlobInfo {
  digest: string;
  size: number;
  /** Filesystem path of the committed, read-only blob. */
  path: string;
}

/** One in-progress write of one blob. At most one exists per digest across all processes. */
export interface IngestWriter {
  readonly digest: string;
  readonly expectedSize: number;
  /** Bytes already accepted (a resumed ingest starts above 0). */
  readonly offset: number;
  /** Hashes and buffers `chunk`; the writer may keep referencing it until the next flush, so callers must not reuse it. */
  write(chunk: Uint8Array): Promise<void>;
  /** Drop everything written so far and start again at offset 0. */
  reset(): Promise<void>;
  /**
   * Verifies size and digest and publishes the blob atomically. On a mismatch the
   * partial data is deleted and MC_OCI_SIZE_MISMATCH / MC_OCI_DIGEST_MISMATCH thrown.
   */
  commit(): Promise<BlobInfo>;
  /** Releases the writer, keeping the partial data so a later ingest resumes it. */
  close(): Promise<void>;
  /** Releases the writer and deletes the partial data. */
  abort(): Promise<void>;
}

export interface EnsureBlobOptions {
  signal?: AbortSignal;
  /** Called with bytes available while waiting for another writer of the same blob. */
  onWaitProgress?: (bytes: number) => void;
}

export interface ContentStore {
  /** The committed blob, or undefined. Never reports an uncommitted ingest. */
  info(digest: string): Promise<BlobInfo | undefined>;
  /** Where the committed blob lives (whether or not it exists yet). */
  path(digest: string): string;
  read(digest: string): Promise<Buffer>;
  /** Stores a small in-memory blob after verifying its digest (and size, if given). */
  put(digest: string, data: Uint8Array, expectedSize?: number): Promise<BlobInfo>;
  /**
   * Opens the single writer for `digest`, waiting while another process or task
   * holds it. Resolves undefined when the blob is (or became) committed.
   */
  openWriter(digest: string, expectedSize: number, options?: EnsureBlobOptions): Promise<IngestWriter | undefined>;
  /**
   * Makes sure the blob is committed: returns it if present, otherwise opens the
   * writer and lets `fill` write it (concurrent callers for one digest share one fill).
   */
  ensure(digest: string, expectedSize: number, fill: (writer: IngestWriter) => Promise<void>, options?: EnsureBlobOptions): Promise<BlobInfo>;
  delete(digest: string): Promise<boolean>;
  list(): Promise<BlobInfo[]>;
}
