import { lstatSync, mkdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** At most this many symlinks are followed while resolving one path (like containerd's fs.RootPath). */
export const MAX_SYMLINKS = 255;

export class RootResolveError extends Error {
  constructor(
    readonly reason: 'loop' | 'not-a-directory',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Resolves directory paths inside a root the way the guest will see them: each
 * component is lstat'ed, symlinks are followed by us (never by the kernel) with
 * the root standing in for `/`, and `..` can never climb above the root — so an
 * absolute or `../../..` symlink target still lands inside the root. The result
 * is a list of components that are all real directories (or do not exist yet),
 * so a path built from it never goes through a symlink when we write.
 *
 * This is safe against the layer because the layer cannot change the tree while
 * we resolve: entries are applied one after the other by this process alone
 * (the image's unpack lock keeps other unpackers out of the temp dir).
 *
 * Results are cached by the requested path; the cache must be invalidated
 * (invalidate()) whenever a directory or symlink is removed or replaced.
 */
export class RootResolver {
  private readonly cache = new Map<string, string[]>();

  constructor(
    readonly root: string,
    /** Called for each directory created while resolving with create=true. */
    private readonly onCreateDir?: (rel: string) => void,
  ) {}

  abs(rel: readonly string[]): string {
    return rel.length === 0 ? this.root : join(this.root, ...rel);
  }

  invalidate(): void {
    this.cache.clear();
  }

  /**
   * Resolves `parts` (already cleaned: no '', '.', '..') to real directory
   * components inside the root. With create=true, missing directories are
   * created (mode 0755); with create=false, the result is undefined when a
   * component is missing.
   */
  async resolveDir(parts: readonly string[], create: boolean): Promise<string[] | undefined> {
    if (parts.length === 0) return [];
    const key = parts.join('/');
    const hit = this.cache.get(key);
    if (hit) return hit;
    const queue = [...parts];
    let resolved: string[] = [];
    let links = 0;
    while (queue.length > 0) {
      const c = queue.shift() as string;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        // `resolved` holds only real directories, so a lexical pop is the real parent.
        resolved.pop();
        continue;
      }
      const next = [...resolved, c];
      const abs = this.abs(next);
      let st;
      try {
        st = lstatSync(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        if (!create) return undefined;
        mkdirSync(abs, { mode: 0o755 });
        this.onCreateDir?.(next.join('/'));
        resolved = next;
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) {
          throw new RootResolveError('loop', `more than ${MAX_SYMLINKS} symlinks while resolving "${key}"`);
        }
        const target = readlinkSync(abs);
        if (target.startsWith('/')) resolved = [];
        queue.unshift(...target.split('/'));
        continue;
      }
      if (!st.isDirectory()) {
        throw new RootResolveError('not-a-directory', `"${next.join('/')}" is not a directory (while resolving "${key}")`);
      }
      resolved = next;
    }
    this.cache.set(key, resolved);
    return resolved;
  }
}
