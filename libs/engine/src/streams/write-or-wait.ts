/**
 * Writes to a stream and, when it is full, waits until it drains: the writer
 * goes no faster than the reader takes it (back-pressure reaches whoever
 * produces the data — a command in a guest). A stream closed by its reader
 * never drains: 'close' ends the wait too. The one home of this rule for the
 * API's NDJSON and SSE responses and the CLI's stdout/stderr.
 */
export async function writeOrWait(stream: NodeJS.WritableStream, data: string | Uint8Array): Promise<void> {
  if (stream.write(data)) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.once('drain', done);
    stream.once('close', done);
  });
}
