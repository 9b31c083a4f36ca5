import { test } from 'node:test';
import assert from 'node:assert/strict';
import { imageProcess } from './image-process.js';

const image = { env: ['PATH=/usr/bin', 'LANG=C.UTF-8'], entrypoint: ['/entry.sh'], cmd: ['serve', '--port', '80'], workingDir: '/app', user: 'app' };

test("argv: Docker's rules for Entrypoint and Cmd", () => {
  assert.deepEqual(imageProcess(image).argv, ['/entry.sh', 'serve', '--port', '80']);
  assert.deepEqual(imageProcess(image, { cmd: ['worker'] }).argv, ['/entry.sh', 'worker'], 'cmd replaces Cmd, keeps Entrypoint');
  assert.deepEqual(imageProcess(image, { cmd: [] }).argv, ['/entry.sh', 'serve', '--port', '80'], 'an empty cmd is not given');
  assert.deepEqual(imageProcess(image, { entrypoint: ['/bin/sh'] }).argv, ['/bin/sh'], 'a new Entrypoint drops the image Cmd');
  assert.deepEqual(imageProcess(image, { entrypoint: ['/bin/sh'], cmd: ['-c', 'x'] }).argv, ['/bin/sh', '-c', 'x']);
  assert.deepEqual(imageProcess(undefined).argv, [], 'nothing to run: the caller decides (a sandbox needs nothing)');
});

test('env: image first, overrides win per key in place; workdir and user fall back to the image', () => {
  const p = imageProcess(image, { env: ['LANG=en_US.UTF-8', ['MODE', 'prod'], 'PATH=/opt/bin', 'BROKEN'] });
  assert.deepEqual(p.env, ['PATH=/opt/bin', 'LANG=en_US.UTF-8', 'MODE=prod']);
  assert.equal(p.workdir, '/app');
  assert.equal(p.user, 'app');
  const q = imageProcess({ env: [], entrypoint: [], cmd: [] }, { workdir: '/srv', user: '1000:1000' });
  assert.equal(q.workdir, '/srv');
  assert.equal(q.user, '1000:1000');
  assert.equal(imageProcess({ env: [], entrypoint: [], cmd: [] }).workdir, '/');
  assert.equal(imageProcess({ env: [], entrypoint: [], cmd: [] }).user, undefined, 'root');
});
