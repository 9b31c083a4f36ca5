// The sha256 (hex) of a file, streamed: the benchmarks' fixture layers are digested by it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export async function sha256File(path) {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk);
  return h.digest('hex');
}
