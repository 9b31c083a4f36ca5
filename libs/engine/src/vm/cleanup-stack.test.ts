import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CleanupStack } from './cleanup-stack.js';

test('CleanupStack runs undos last-first, awaits each, survives a failing one, and runs each once', async () => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  stack.push(() => ran.push('runtime dir'));
  stack.push(async () => {
    await new Promise((r) => setImmediate(r)); // not awaited, "runtime dir" would come first
    ran.push('sockets');
  });
  stack.push(() => {
    throw new Error('leave group failed');
  });
  stack.push(async () => {
    ran.push('uid');
    return Promise.reject(new Error('release failed'));
  });
  await stack.runAll();
  assert.deepEqual(ran, ['uid', 'sockets', 'runtime dir']);
  await stack.runAll();
  assert.deepEqual(ran, ['uid', 'sockets', 'runtime dir'], 'a second runAll has nothing left to undo');
  stack.push(() => ran.push('later'));
  await stack.runAll();
  assert.deepEqual(ran.at(-1), 'later', 'undos pushed after a runAll run on the next one');
});
