import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePortMapping, tryParsePortMapping } from './port-mapping.js';

test('tryParsePortMapping accepts PORT and HOST:GUEST in 1..65535', () => {
  assert.deepEqual(tryParsePortMapping('8080'), { ok: true, value: { host: 8080, guest: 8080 } });
  assert.deepEqual(tryParsePortMapping('8080:80'), { ok: true, value: { host: 8080, guest: 80 } });
  assert.deepEqual(tryParsePortMapping('1:65535'), { ok: true, value: { host: 1, guest: 65535 } });
});

test('tryParsePortMapping rejects malformed and out-of-range ports, naming the side', () => {
  const cases: [string, string][] = [
    ['', 'port "" must be "PORT" or "HOST:GUEST" (e.g. "8080" or "8080:80")'],
    ['1:2:3', 'port "1:2:3" must be "PORT" or "HOST:GUEST" (e.g. "8080" or "8080:80")'],
    ['0', 'port "0": the port 0 is out of range 1..65535'],
    ['65536', 'port "65536": the port 65536 is out of range 1..65535'],
    ['80:0', 'port "80:0": guest port 0 is out of range 1..65535'],
    ['99999:80', 'port "99999:80": host port 99999 is out of range 1..65535'],
    ['http', 'port "http": the port "http" is not a number'],
    ['-1', 'port "-1": the port "-1" is not a number'],
    ['80:', 'port "80:": guest port "" is not a number'],
    [':80', 'port ":80": host port "" is not a number'],
    [' 80', 'port " 80": the port " 80" is not a number'],
    ['8.0', 'port "8.0": the port "8.0" is not a number'],
  ];
  for (const [input, error] of cases) assert.deepEqual(tryParsePortMapping(input), { ok: false, error }, input);
});

test('parsePortMapping returns the mapping or throws MC_CONFIG_INVALID with the reason', () => {
  assert.deepEqual(parsePortMapping('8080:80'), { host: 8080, guest: 80 });
  assert.throws(() => parsePortMapping('0'), { code: 'MC_CONFIG_INVALID', message: 'port "0": the port 0 is out of range 1..65535' });
});
