import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventsQuerySchema, LogsQuerySchema, SelectionSchema, StatusQuerySchema, StopQuerySchema, UpEnvelopeSchema } from './services.js';

test('service queries: name lists split on commas or repeat, booleans from query strings', () => {
  assert.deepEqual(StatusQuerySchema.parse({ services: 'a, b', status: ['running', 'failed,lost'] }), {
    services: ['a', 'b'],
    status: ['running', 'failed', 'lost'],
  });
  assert.deepEqual(StopQuerySchema.parse({ wait: '1', timeout: '30' }), { wait: true, timeout: 30 });
  assert.deepEqual(LogsQuerySchema.parse({}), { stream: 'stdout', follow: false });
  assert.equal(EventsQuerySchema.safeParse({ since: 'yesterday' }).success, false);
});

test('service bodies: unknown keys are refused', () => {
  assert.equal(SelectionSchema.safeParse({ group: 'g', colour: 'red' }).success, false);
  assert.equal(UpEnvelopeSchema.safeParse({ config: {}, timeout: 0 }).success, false);
  assert.equal(UpEnvelopeSchema.safeParse({ config: { service: [] }, wait: true }).success, true);
});
