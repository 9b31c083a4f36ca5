import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSse, type SseEvent } from './sse-reader.js';

async function collect(chunks: string[]): Promise<SseEvent[]> {
  async function* gen() {
    for (const c of chunks) yield new TextEncoder().encode(c);
  }
  const out: SseEvent[] = [];
  for await (const e of readSse(gen())) out.push(e);
  return out;
}

test('readSse: events split across chunks, CRLF, comments, ids, multi-line data', async () => {
  const events = await collect([
    ': monocore event stream\n\n',
    'id: 1-0\nevent: sta',
    'te\ndata: {"a":1}\n',
    '\n: keep-alive\n\n',
    'event: log\r\ndata: line one\r\ndata: line two\r\n\r\n',
    'data: no event name\n\n',
    'event: trailing-without-blank-line\ndata: x\n',
  ]);
  assert.deepEqual(events, [
    { event: 'state', data: '{"a":1}', id: '1-0' },
    { event: 'log', data: 'line one\nline two', id: '1-0' },
    { event: 'message', data: 'no event name', id: '1-0' },
  ]);
});
