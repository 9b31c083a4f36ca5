/** Largest NDJSON line accepted (a streamed exec's chunk is at most 64 KiB, base64 about 88 KiB). */
export const MAX_NDJSON_LINE = 16 << 20;

/**
 * Splits a byte stream into its JSON lines (application/x-ndjson), parsed.
 * A line longer than `maxLine` is an error rather than a buffer without end.
 */
export async function* readNdjson(body: AsyncIterable<Uint8Array | string>, maxLine = MAX_NDJSON_LINE): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line !== '') yield JSON.parse(line);
    }
    if (buffer.length > maxLine) throw new Error(`an NDJSON line is longer than ${maxLine} characters`);
  }
  buffer += decoder.decode();
  if (buffer.trim() !== '') yield JSON.parse(buffer);
}
