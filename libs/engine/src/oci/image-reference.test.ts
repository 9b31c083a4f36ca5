import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMonocoreError } from '../errors/index.js';
import { parseImageReference } from './image-reference.js';

const H64 = 'a'.repeat(64);

// input → [registry, repository, tag, digest, canonical string]
const valid: [string, string, string, string | undefined, string | undefined, string][] = [
  ['alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'docker.io/library/alpine:latest'],
  ['alpine:3.20', 'docker.io', 'library/alpine', '3.20', undefined, 'docker.io/library/alpine:3.20'],
  ['python:3.11-slim', 'docker.io', 'library/python', '3.11-slim', undefined, 'docker.io/library/python:3.11-slim'],
  ['user/app:1', 'docker.io', 'user/app', '1', undefined, 'docker.io/user/app:1'],
  ['docker.io/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'docker.io/library/alpine:latest'],
  ['index.docker.io/library/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'docker.io/library/alpine:latest'],
  [`ghcr.io/o/r@sha256:${H64}`, 'ghcr.io', 'o/r', undefined, `sha256:${H64}`, `ghcr.io/o/r@sha256:${H64}`],
  [`alpine:3@sha256:${H64}`, 'docker.io', 'library/alpine', '3', `sha256:${H64}`, `docker.io/library/alpine:3@sha256:${H64}`],
  ['localhost:5000/x:y', 'localhost:5000', 'x', 'y', undefined, 'localhost:5000/x:y'],
  ['localhost/x', 'localhost', 'x', 'latest', undefined, 'localhost/x:latest'],
  ['127.0.0.1:15000/a/b:c', '127.0.0.1:15000', 'a/b', 'c', undefined, '127.0.0.1:15000/a/b:c'],
  ['127.0.0.1:15000/monocore-test/busybox:latest', '127.0.0.1:15000', 'monocore-test/busybox', 'latest', undefined, '127.0.0.1:15000/monocore-test/busybox:latest'],
  ['[::1]:5000/x', '[::1]:5000', 'x', 'latest', undefined, '[::1]:5000/x:latest'],
  ['quay.io/a/b/c/d:v1.2.3_rc-1', 'quay.io', 'a/b/c/d', 'v1.2.3_rc-1', undefined, 'quay.io/a/b/c/d:v1.2.3_rc-1'],
  ['my.registry:443/ns/img__x', 'my.registry:443', 'ns/img__x', 'latest', undefined, 'my.registry:443/ns/img__x:latest'],
  ['a.b-c/d.e_f--g:_t', 'a.b-c', 'd.e_f--g', '_t', undefined, 'a.b-c/d.e_f--g:_t'],
  [`x@sha512:${'b'.repeat(128)}`, 'docker.io', 'library/x', undefined, `sha512:${'b'.repeat(128)}`, `docker.io/library/x@sha512:${'b'.repeat(128)}`],
];

for (const [input, registry, repository, tag, digest, canonical] of valid) {
  test(`parses ${input}`, () => {
    const ref = parseImageReference(input);
    assert.equal(ref.registry, registry);
    assert.equal(ref.repository, repository);
    assert.equal(ref.tag, tag);
    assert.equal(ref.digest, digest);
    assert.equal(ref.toString(), canonical);
    assert.equal(parseImageReference(canonical).toString(), canonical, 'canonical form re-parses to itself');
  });
}

// input → the reason the message must contain
const invalid: [string, string][] = [
  ['', 'must not be empty'],
  [' alpine', 'whitespace'],
  ['Alpine', 'repository component "Alpine" must be lowercase'],
  ['user/App:1', 'repository component "App" must be lowercase'],
  ['alpine:', 'tag "" must match'],
  ['alpine:-bad', 'tag "-bad" must match'],
  [`alpine:${'t'.repeat(129)}`, 'must match'],
  ['alpine@sha256:abc', 'sha256 digest must be 64 lowercase hex characters'],
  [`alpine@sha256:${'A'.repeat(64)}`, 'sha256 digest must be 64 lowercase hex characters'],
  ['alpine@md5', 'is not algorithm:hex'],
  ['alpine@foo:xyz', 'at least 32 hex characters'],
  ['a//b', 'empty path component'],
  ['/alpine', 'empty path component'],
  ['alpine/', 'empty path component'],
  ['localhost:99999/x', 'registry port "99999" must be a number in 1..65535'],
  ['localhost:abc/x', 'registry port "abc" must be a number in 1..65535'],
  ['-bad.io/x', 'registry host "-bad.io"'],
  ['a..b/x', 'registry host "a..b"'],
  ['ns/a--', 'repository component "a--"'],
  ['ns/.x', 'repository component ".x"'],
  ['ns/x_', 'repository component "x_"'],
  ['ns/a___b', 'repository component "a___b"'],
  [':tag', 'repository name is missing'],
  [`ghcr.io/${'a'.repeat(250)}`, 'longer than 255'],
];

for (const [input, reason] of invalid) {
  test(`rejects ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`, () => {
    assert.throws(
      () => parseImageReference(input),
      (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_OCI_INVALID_REFERENCE'), `expected MC_OCI_INVALID_REFERENCE, got ${String(err)}`);
        assert.ok(err.message.startsWith(`invalid image reference "${input}": `), err.message);
        assert.ok(err.message.includes(reason), `"${err.message}" should include "${reason}"`);
        assert.equal(err.details.reference, input);
        return true;
      },
    );
  });
}

test('reference is the digest when pinned, else the tag', () => {
  assert.equal(parseImageReference('alpine').reference, 'latest');
  assert.equal(parseImageReference(`alpine:3@sha256:${H64}`).reference, `sha256:${H64}`);
  assert.equal(parseImageReference('127.0.0.1:15000/a/b:c').name, '127.0.0.1:15000/a/b');
});
