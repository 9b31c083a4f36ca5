/**
 * Gathers a byte stream's chunks into pieces of at least `bytes` (the last may be smaller).
 * An HTTP body arrives in 16–64 KiB chunks; relaying each as its own Redis entry, and writing
 * each into the guest's lane as its own pwrite, cost more than the bytes themselves. Holds at
 * most `bytes` plus one chunk. Only for bulk data whose consumer waits for the end anyway
 * (uploads): an interactive stream (stdin) must not wait for a piece to fill.
 */
export async function* gather(source: AsyncIterable<Buffer>, bytes: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    parts.push(chunk);
    size += chunk.length;
    if (size >= bytes) {
      yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
      parts = [];
      size = 0;
    }
  }
  if (size > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
}
