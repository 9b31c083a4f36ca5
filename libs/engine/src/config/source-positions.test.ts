import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitPath } from './config-issue.js';
import { SourcePositionIndex } from './source-positions.js';

const toml = `# comment with [[service]] in it
top = 1

[[service]]
name = "a"
args = ["x", "y,]", 'z']

[[service]]   # second
name = "b"
"depends_on" = [
  "a",   # first
  # a comment line
  "c",
]
desc = """
name = "fake"
[[service]]
"""
cpus = 2

[[group]]
name = "g"
local_only = true

[[group.volume]]
name = "v0"
path = "/v0"

[[group.volume]]
name = "v1"
path = "/v1"

[[group.env]]
name = "e"

[[group]]
name = "h"

[[group.volume]]
name = "w"
`;

const idx = new SourcePositionIndex(toml);
const at = (path: string) => idx.locate(splitPath(path));

test('finds the n-th [[service]] table and its keys', () => {
  assert.deepEqual(at('service[0]'), { line: 4, column: 1 });
  assert.deepEqual(at('service[0].name'), { line: 5, column: 1 });
  assert.deepEqual(at('service[1].name'), { line: 9, column: 1 });
  assert.deepEqual(at('service[1].cpus'), { line: 19, column: 1 }, 'multi-line string is skipped, not parsed as headers');
  assert.deepEqual(at('top'), { line: 2, column: 1 });
});

test('finds array elements, across lines and past comments and tricky strings', () => {
  assert.deepEqual(at('service[0].args[0]'), { line: 6, column: 9 });
  assert.deepEqual(at('service[0].args[2]'), { line: 6, column: 21 });
  assert.deepEqual(at('service[1].depends_on[0]'), { line: 11, column: 3 });
  assert.deepEqual(at('service[1].depends_on[1]'), { line: 13, column: 3 });
});

test('finds nested arrays of tables inside the right parent', () => {
  assert.deepEqual(at('group[0].local_only'), { line: 23, column: 1 });
  assert.deepEqual(at('group[0].volume[1].path'), { line: 31, column: 1 });
  assert.deepEqual(at('group[0].env[0].name'), { line: 34, column: 1 });
  assert.deepEqual(at('group[1].volume[0].name'), { line: 40, column: 1 });
  assert.deepEqual(at('group[1].volume[1]'), { line: 36, column: 1 }, 'missing table falls back to its parent');
});

test('falls back to the table header for a missing key, and to nothing when unknown', () => {
  assert.deepEqual(at('service[0].cpus'), { line: 4, column: 1 });
  assert.deepEqual(at('service[1].depends_on[5]'), { line: 10, column: 1 });
  assert.equal(at('service[7].name'), undefined);
  assert.equal(at(''), undefined);
});

test('a key that is a table header, not a key line, maps to that header', () => {
  const single = new SourcePositionIndex('# x\n[service]\nname = "a"\n');
  assert.deepEqual(single.locate(['service']), { line: 2, column: 1 });
  assert.deepEqual(single.locate(['service', 'name']), { line: 2, column: 1 });
});
