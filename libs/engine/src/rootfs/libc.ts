import { createRequire } from 'node:module';
import { MonocoreError } from '../errors/index.js';

/** The few libc calls Node has no binding for, through koffi. */
export interface Libc {
  flock(fd: number, op: number): number;
  /** syncfs(2) on Linux; run on a koffi worker thread so the event loop stays free. */
  syncfs?: { async(fd: number, cb: (err: unknown, res: number) => void): void };
  /** sync(2): the fallback where syncfs does not exist (macOS). */
  sync: { async(cb: (err: unknown, res: unknown) => void): void };
  /** lsetxattr(2) (Linux): never follows a final symlink. */
  lsetxattr?: (path: string, name: string, value: Buffer, size: number, flags: number) => number;
  errno(): number;
}

let loaded: Libc | undefined;

export function libc(): Libc {
  if (loaded) return loaded;
  try {
    // koffi is CommonJS; createRequire keeps this module ESM and loads it lazily,
    // so importing the engine never fails on a host where koffi cannot load.
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as {
      // koffi functions take whatever their C signature says: typed per function in Libc.
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      load(lib: string): { func(sig: string): ((...a: any[]) => number) & { async: (...a: unknown[]) => void } };
      errno(): number;
    };
    const lib = koffi.load(process.platform === 'darwin' ? 'libSystem.B.dylib' : 'libc.so.6');
    loaded = {
      flock: lib.func('int flock(int fd, int op)'),
      ...(process.platform === 'linux'
        ? {
            syncfs: lib.func('int syncfs(int fd)'),
            lsetxattr: lib.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
          }
        : {}),
      sync: lib.func('void sync(void)'),
      errno: () => koffi.errno(),
    };
    return loaded;
  } catch (err) {
    throw new MonocoreError('MC_ROOTFS_UNPACK_FAILED', `cannot load libc through koffi: ${(err as Error).message}`, {}, { cause: err });
  }
}
