/**
 * Writes to a stream (stdout, stderr) and waits while it is full, so output
 * from the API is read no faster than the terminal or pipe takes it (the
 * back-pressure reaches the command in the guest). A stream closed by its
 * reader never drains: 'close' ends the wait too.
 */
export async function writeOut(stream: NodeJS.WritableStream, data: string | Uint8Array): Promise<void> {
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
