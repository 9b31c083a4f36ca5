import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** Reads the last `bytes` of a file (the console tail for error messages). */
export function fileTail(path: string, bytes = 4096): string {
  try {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const len = Math.min(bytes, size);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}
