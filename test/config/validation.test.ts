// Every rejection rule of monocore.toml, each checked by its exact path, message
// and (from TOML) line:column. A list comparison also proves nothing extra is reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  isMonocoreError,
  parseConfigToml,
  resolveService,
  resolveServices,
  validateConfig,
  type ConfigIssue,
} from '@monocore/engine';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = (name: string) => readFileSync(`${repo}test/fixtures/config/${name}`, 'utf8');

function issuesOf(run: () => unknown): ConfigIssue[] {
  try {
    run();
  } catch (err) {
    assert.ok(isMonocoreError(err, 'MC_CONFIG_INVALID'), `expected MC_CONFIG_INVALID, got ${String(err)}`);
    return err.details.issues as ConfigIssue[];
  }
  assert.fail('expected the config to be rejected');
}

const show = (i: ConfigIssue) => `${i.line !== undefined ? `${i.line}:${i.column} ` : ''}${i.path}: ${i.message}`;

/** Parses TOML and checks the complete, ordered list of `LINE:COL path: message`. */
function rejects(toml: string, expected: string[]): void {
  assert.deepEqual(issuesOf(() => parseConfigToml(toml)).map(show), expected);
}

/** `[[service]]` tables from name → extra lines. */
const svc = (name: string, ...lines: string[]) => [`[[service]]`, `name = "${name}"`, ...lines, ''].join('\n');

test('the seed README example validates, with defaults applied', () => {
  const cfg = parseConfigToml(fixture('seed.toml'));
  assert.equal(cfg.service.length, 2);
  assert.deepEqual(cfg.group, [{ name: 'demo', local_only: true, volume: [], env: [] }]);
  const sh = cfg.service[0];
  assert.equal(sh?.name, 'sh-counter');
  assert.equal(sh?.ram, 256);
  assert.deepEqual(sh?.volumes, []);
  assert.equal(sh?.restart, 'on-failure');
  assert.equal(sh?.max_restarts, 5);
  assert.equal(resolveService(cfg, 'python-counter').image, 'docker.io/library/python:3.11-slim');
});

test('defaults: cpus 1, ram 1024 MiB, local_only true, restart on-failure, max_restarts 5', () => {
  const cfg = parseConfigToml('[[service]]\nname = "a"\n[[group]]\nname = "g"\n');
  assert.deepEqual(cfg.service[0], {
    name: 'a', args: [], cpus: 1, ram: 1024, volumes: [], envs: [], depends_on: [],
    group_envs: [], group_volumes: [], restart: 'on-failure', max_restarts: 5,
  });
  assert.equal(cfg.group[0]?.local_only, true);
  assert.deepEqual(parseConfigToml(''), { service: [], group: [] }, 'an empty file is a valid, empty config');
});

test('every field resolves: group envs merged (service wins), group volumes under their base, ports parsed', () => {
  const cfg = parseConfigToml(fixture('full.toml'));
  const [db, web, lonely] = resolveServices(cfg);
  assert.deepEqual(db?.envs, [
    { key: 'LOG_LEVEL', value: 'debug' },
    { key: 'REGION', value: 'prod' },
    { key: 'API_KEY', value: 'secret=with=equals' },
    { key: 'DB_NAME', value: 'main' },
  ]);
  assert.deepEqual(db?.volumes, [
    { host: '/srv/monocore-shared/db', guest: '/shared' },
    { host: '/srv/monocore-shared/exports', guest: '/exports' },
    { host: '/tmp/monocore-db', guest: '/var/lib/db' },
  ]);
  assert.deepEqual(db?.port, { host: 15432, guest: 5432 });
  assert.equal(db?.image, '127.0.0.1:15000/monocore-test/busybox:latest');
  assert.equal(db?.localOnly, false);
  assert.equal(db?.restart, 'always');
  assert.equal(db?.maxRestarts, 10);
  assert.equal(db?.workdir, '/var/lib/db');
  assert.deepEqual(web?.port, { host: 8080, guest: 8080 });
  assert.deepEqual(web?.dependsOn, ['db']);
  assert.deepEqual(web?.envs, [{ key: 'LOG_LEVEL', value: 'info' }, { key: 'REGION', value: 'local' }]);
  assert.equal(lonely?.localOnly, true, 'no group: local only');
  assert.equal(lonely?.image, undefined);
  assert.throws(() => resolveService(cfg, 'ghost'), { code: 'MC_PLAN_UNKNOWN_SELECTION' });
});

test('TOML syntax errors carry line and column', () => {
  rejects('[[service]]\nname = "a"\ncpus = \n', ['3:8 : TOML syntax error: invalid value']);
  rejects('[[service]]\nname = "a"\nname = "b"\n', ['3:1 : TOML syntax error: trying to redefine an already defined table or value']);
  rejects('[[service]\n', ['1:11 : TOML syntax error: expected end of table array declaration']);
});

test('unknown keys are errors, with a "did you mean" hint when close', () => {
  rejects(svc('a', 'comand = "/bin/sh"', 'dependson = []', 'colour = "red"'), [
    '3:1 service[0].comand: unknown key "comand" (did you mean "command"?)',
    '4:1 service[0].dependson: unknown key "dependson" (did you mean "depends_on"?)',
    '5:1 service[0].colour: unknown key "colour"',
  ]);
  rejects('services = []\n', ['1:1 services: unknown key "services" (did you mean "service"?)']);
  rejects('[[group]]\nname = "g"\nlocalonly = true\n[[group.volume]]\nname = "v"\npath = "/v"\nmode = "ro"\n', [
    '3:1 group[0].localonly: unknown key "localonly" (did you mean "local_only"?)',
    '7:1 group[0].volume[0].mode: unknown key "mode"',
  ]);
  rejects(svc('a', 'group = "g"', 'group_volumes = [{ name = "v", paht = "/x" }]') + '[[group]]\nname = "g"\n[[group.volume]]\nname = "v"\npath = "/v"\n', [
    '4:18 service[0].group_volumes[0].path: is required',
    '4:18 service[0].group_volumes[0].paht: unknown key "paht" (did you mean "path"?)',
  ]);
});

test('duplicate service and group names', () => {
  rejects(svc('a') + svc('b') + svc('a') + '[[group]]\nname = "g"\n[[group]]\nname = "g"\n', [
    '6:1 service[2].name: duplicate service name "a" (first defined at service[0])',
    '10:1 group[1].name: duplicate group name "g" (first defined at group[0])',
  ]);
});

test('unsafe names: path tricks, empty, too long, uppercase, bad characters', () => {
  const long = 'x'.repeat(64);
  rejects(svc('../x') + svc('a/b') + svc('') + svc(long) + svc('Web') + svc('web_1') + svc('-a'), [
    '2:1 service[0].name: name "../x" must not contain path separators or ".."',
    '4:1 service[1].name: name "a/b" must not contain path separators or ".."',
    '6:1 service[2].name: name must not be empty',
    '8:1 service[3].name: name is 64 characters long; the limit is 63',
    '10:1 service[4].name: name "Web" must be lowercase (allowed: a-z, 0-9 and "-")',
    '12:1 service[5].name: name "web_1" may only use a-z, 0-9 and "-", and must start and end with a letter or digit',
    '14:1 service[6].name: name "-a" may only use a-z, 0-9 and "-", and must start and end with a letter or digit',
  ]);
  rejects('[[group]]\nname = "Demo"\n[[group.env]]\nname = "a/b"\n', [
    '2:1 group[0].name: name "Demo" must be lowercase (allowed: a-z, 0-9 and "-")',
    '4:1 group[0].env[0].name: name "a/b" must not contain path separators or ".."',
  ]);
  rejects('[[service]]\ncpus = 2\n', ['1:1 service[0].name: is required']);
});

test('depends_on: unknown service, itself, duplicates', () => {
  rejects(svc('web', 'depends_on = ["api", "web", "dbb", "api"]') + svc('api') + svc('db'), [
    '3:22 service[0].depends_on[1]: service "web" depends on itself',
    '3:29 service[0].depends_on[2]: unknown service "dbb" (did you mean "db"?)',
    '3:36 service[0].depends_on[3]: duplicate dependency "api"',
  ]);
  rejects(svc('a', 'depends_on = [', '  "x",', '  "Bad",', ']'), [
    '4:3 service[0].depends_on[0]: unknown service "x"',
    '5:3 service[0].depends_on[1]: name "Bad" must be lowercase (allowed: a-z, 0-9 and "-")',
    '5:3 service[0].depends_on[1]: unknown service "Bad"',
  ]);
});

test('cycles are printed a -> b -> c -> a, each once', () => {
  rejects(svc('a', 'depends_on = ["b"]') + svc('b', 'depends_on = ["c"]') + svc('c', 'depends_on = ["a"]') + svc('d', 'depends_on = ["d2"]') + svc('d2', 'depends_on = ["d"]'), [
    '9:15 service[2].depends_on[0]: dependency cycle: a -> b -> c -> a',
    '15:15 service[4].depends_on[0]: dependency cycle: d -> d2 -> d',
  ]);
});

test('dependency chains: 32 services pass, 33 fail at the service that crosses the limit', () => {
  const chain = (n: number) =>
    Array.from({ length: n }, (_, i) => svc(`s${i + 1}`, ...(i > 0 ? [`depends_on = ["s${i}"]`] : []))).join('');
  assert.equal(parseConfigToml(chain(32)).service.length, 32);
  const issues = issuesOf(() => parseConfigToml(chain(33)));
  const names = Array.from({ length: 33 }, (_, i) => `s${33 - i}`).join(' -> ');
  assert.deepEqual(issues.map(show), [`98:1 service[32].depends_on: dependency chain of 33 services exceeds the limit of 32: ${names}`]);
  // Chain length counts services on the longest path, not services in the file:
  // 31 in a row plus two side by side on top is 33 services but a chain of 32.
  assert.equal(parseConfigToml(chain(31) + svc('t1', 'depends_on = ["s31"]') + svc('t2', 'depends_on = ["s31", "s1"]')).service.length, 33);
  assert.deepEqual(
    issuesOf(() => parseConfigToml(chain(31) + svc('t1', 'depends_on = ["s31"]') + svc('t2', 'depends_on = ["t1"]'))).map((i) => i.path),
    ['service[32].depends_on'],
  );
});

test('groups: undefined group, group_envs/group_volumes naming entries the group lacks or used without a group', () => {
  const groups = '[[group]]\nname = "app"\n[[group.volume]]\nname = "data"\npath = "/srv/data"\n[[group.env]]\nname = "prod"\nenvs = ["A=1"]\n';
  rejects(
    svc('a', 'group = "ap"') +
      svc('b', 'group = "app"', 'group_envs = ["prod", "stage"]', 'group_volumes = [{ name = "logs", path = "/l" }, { name = "data", path = "/etc:/etc" }]') +
      svc('c', 'group_envs = ["prod"]', 'group_volumes = [{ name = "data", path = "x:/x" }]') +
      groups,
    [
      '3:1 service[0].group: unknown group "ap" (did you mean "app"?)',
      '7:23 service[1].group_envs[1]: group "app" has no env set "stage"',
      '8:18 service[1].group_volumes[0].name: group "app" has no volume "logs"',
      '8:50 service[1].group_volumes[1].path: host path "/etc" is outside the base path "/srv/data" of group volume "data"',
      '11:1 service[2].group_envs: group_envs needs the service to belong to a group (set "group")',
      '12:1 service[2].group_volumes: group_volumes needs the service to belong to a group (set "group")',
    ],
  );
});

test('ports: N or H:G in 1..65535, and one host port per host', () => {
  rejects(
    svc('a', 'port = "8080"') + svc('b', 'port = "8080:80"') + svc('c', 'port = "0"') + svc('d', 'port = "80:70000"') + svc('e', 'port = "web"') + svc('f', 'port = 8080'),
    [
      '6:1 service[1].port: host port 8080 is already used by service "a" (service[0].port)',
      '9:1 service[2].port: port "0": the port 0 is out of range 1..65535',
      '12:1 service[3].port: port "80:70000": guest port 70000 is out of range 1..65535',
      '15:1 service[4].port: port "web": the port "web" is not a number',
      '18:1 service[5].port: expected string, got integer',
    ],
  );
});

test('volumes: absolute, no "..", well-formed; one mount per guest path', () => {
  rejects(svc('a', 'volumes = ["data", "/a/../etc", "/x:/y:/z", "/ok:/same", "/other:/same", "/h:rel"]', 'workdir = "app"'), [
    '3:12 service[0].volumes[0]: volume "data": host path "data" must be absolute (start with "/")',
    '3:20 service[0].volumes[1]: volume "/a/../etc": host path "/a/../etc" must not contain ".."',
    '3:33 service[0].volumes[2]: volume "/x:/y:/z" must be "/path" or "/host:/guest"',
    '3:58 service[0].volumes[4]: guest path "/same" is already mounted by service[0].volumes[3]',
    '3:74 service[0].volumes[5]: volume "/h:rel": guest path "rel" must be absolute (start with "/")',
    '4:1 service[0].workdir: path "app" must be absolute (start with "/")',
  ]);
  rejects('[[group]]\nname = "g"\n[[group.volume]]\nname = "v"\npath = "/srv/../etc"\n', [
    '5:1 group[0].volume[0].path: path "/srv/../etc" must not contain ".."',
  ]);
});

test('host directories are shared only inside one group', () => {
  rejects(
    svc('a', 'volumes = ["/data"]') +
      svc('b', 'volumes = ["/data/x:/x"]') +
      svc('c', 'group = "g"', 'volumes = ["/srv/g/x:/x"]') +
      svc('d', 'group = "g"', 'volumes = ["/srv/g:/g"]') +
      '[[group]]\nname = "g"\n[[group.volume]]\nname = "v"\npath = "/srv/g"\n' +
      '[[group]]\nname = "h"\n[[group.volume]]\nname = "w"\npath = "/srv"\n',
    [
      '6:12 service[1].volumes[0]: host path "/data/x" overlaps "/data" of service[0].volumes[0] (service "a", no group); a host directory may only be shared inside one group',
      '24:1 group[1].volume[0].path: host path "/srv" overlaps "/srv/g" of group[0].volume[0].path (group "g"); a host directory may only be shared inside one group',
    ],
  );
  // Different, non-nested directories never clash: "/data2" is not inside "/data".
  assert.equal(parseConfigToml(svc('a', 'volumes = ["/data"]') + svc('b', 'volumes = ["/data2"]')).service.length, 2);
});

test('envs: KEY=value with a valid key, each key once', () => {
  rejects(svc('a', 'envs = ["NOEQUALS", "1BAD=x", "OK=1", "OK=2"]') + '[[group]]\nname = "g"\n[[group.env]]\nname = "e"\nenvs = ["A-B=1"]\n', [
    '3:9 service[0].envs[0]: env "NOEQUALS" must be KEY=value',
    '3:21 service[0].envs[1]: env "1BAD=x": key "1BAD" must match [A-Za-z_][A-Za-z0-9_]*',
    '3:39 service[0].envs[3]: duplicate env key "OK" (also service[0].envs[2])',
    '8:9 group[0].env[0].envs[0]: env "A-B=1": key "A-B" must match [A-Za-z_][A-Za-z0-9_]*',
  ]);
});

test('cpus, ram and restart settings within their documented ranges', () => {
  rejects(
    svc('a', 'cpus = 0', 'ram = 32') +
      svc('b', 'cpus = 65', 'ram = 2097152') +
      svc('c', 'cpus = 1.5', 'ram = "1G"') +
      svc('d', 'restart = "sometimes"', 'max_restarts = 101') +
      svc('e', 'max_restarts = -1'),
    [
      '3:1 service[0].cpus: must be an integer in 1..64, got 0',
      '4:1 service[0].ram: must be an integer in 64..1048576, got 32',
      '7:1 service[1].cpus: must be an integer in 1..64, got 65',
      '8:1 service[1].ram: must be an integer in 64..1048576, got 2097152',
      '11:1 service[2].cpus: must be an integer in 1..64, got 1.5',
      '12:1 service[2].ram: must be an integer in 64..1048576, got "1G"',
      '15:1 service[3].restart: must be one of "on-failure", "always", "no", got "sometimes"',
      '16:1 service[3].max_restarts: must be an integer in 0..100, got 101',
      '19:1 service[4].max_restarts: must be an integer in 0..100, got -1',
    ],
  );
  const ok = parseConfigToml(svc('a', 'cpus = 64', 'ram = 1048576', 'max_restarts = 0') + svc('b', 'ram = 64', 'restart = "no"'));
  assert.equal(ok.service[0]?.cpus, 64);
});

test("disk: MiB in 64..1048576, unset by default (the backend's 4096), carried to the VM spec", () => {
  rejects(svc('a', 'disk = 32') + svc('b', 'disk = 2097152') + svc('c', 'disk = "4G"'), [
    '3:1 service[0].disk: must be an integer in 64..1048576, got 32',
    '6:1 service[1].disk: must be an integer in 64..1048576, got 2097152',
    '9:1 service[2].disk: must be an integer in 64..1048576, got "4G"',
  ]);
  const cfg = parseConfigToml(svc('a', 'disk = 1024') + svc('b'));
  assert.equal(resolveService(cfg, 'a').disk, 1024);
  assert.equal(resolveService(cfg, 'b').disk, undefined, 'unset: older configs keep their config hash');
});

test('base images must parse as image references', () => {
  rejects(svc('a', 'base = "Alpine:latest"') + svc('b', 'base = "localhost:99999/x"') + svc('c', 'base = "alpine@sha256:123"') + svc('d', 'base = "127.0.0.1:15000/a/b:c"'), [
    '3:1 service[0].base: invalid image reference "Alpine:latest": repository component "Alpine" must be lowercase',
    '6:1 service[1].base: invalid image reference "localhost:99999/x": registry port "99999" must be a number in 1..65535',
    '9:1 service[2].base: invalid image reference "alpine@sha256:123": sha256 digest must be 64 lowercase hex characters',
  ]);
});

test('wrong types name what was expected', () => {
  rejects(svc('a', 'args = "x"', 'volumes = [1]', 'group_volumes = ["v"]') + '[[group]]\nname = 5\nlocal_only = "yes"\n', [
    '3:1 service[0].args: expected array, got string',
    '4:12 service[0].volumes[0]: expected string, got integer',
    '5:18 service[0].group_volumes[0]: expected table, got string',
    '7:1 group[0].name: expected string, got integer',
    '8:1 group[0].local_only: expected boolean, got string',
  ]);
  assert.deepEqual(issuesOf(() => parseConfigToml('service = 3\n')).map(show), ['1:1 service: expected array, got integer']);
  assert.deepEqual(issuesOf(() => parseConfigToml('[service]\nname = "a"\n[[group]]\nname = "g"\n[group.volume]\nname = "v"\n')).map(show), [
    '1:1 service: expected an array of tables: write [[service]], not [service]',
    '5:1 group[0].volume: expected an array of tables: write [[group.volume]], not [group.volume]',
  ]);
});

test('all problems are reported at once, schema and cross-field together, sorted by line', () => {
  const toml = fixture('broken.toml');
  const issues = issuesOf(() => parseConfigToml(toml, { source: 'broken.toml' }));
  assert.ok(issues.length >= 6, `several problems, got ${issues.length}`);
  const lines = issues.map((i) => i.line ?? 0);
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
  assert.ok(issues.every((i) => i.line !== undefined && i.column !== undefined), 'every issue of this file is placed');
  try {
    parseConfigToml(toml, { source: 'broken.toml' });
  } catch (err) {
    assert.ok(isMonocoreError(err));
    assert.match(err.message, new RegExp(`^invalid configuration in broken\\.toml: ${issues.length} problems\\n  line \\d+: `));
    assert.equal(err.details.source, 'broken.toml');
    assert.equal(err.httpStatus, 400);
  }
});

test('a JSON body (REST API) validates with the same rules and paths, without lines', () => {
  const issues = issuesOf(() =>
    validateConfig({
      service: [{ name: 'web', depends_on: ['db'], comand: 'x' }, { name: 'web' }],
      group: [{ name: 'g', volume: [{ name: 'v' }] }],
    }),
  );
  assert.deepEqual(issues.map(show), [
    'service[0].comand: unknown key "comand" (did you mean "command"?)',
    'group[0].volume[0].path: is required',
    'service[1].name: duplicate service name "web" (first defined at service[0])',
    'service[0].depends_on[0]: unknown service "db"',
  ]);
  assert.deepEqual(issuesOf(() => validateConfig([])).map(show), [': expected table, got array']);
  assert.deepEqual(issuesOf(() => validateConfig(null)).map(show), [': expected table, got null']);
  const cfg = validateConfig({ service: [{ name: 'a', base: 'alpine' }] });
  assert.deepEqual(cfg.group, []);
  assert.equal(cfg.service[0]?.ram, 1024);
});

test('group network: outbound with an allow-list resolves; local_only still works; network replaces it', () => {
  const cfg = parseConfigToml(
    '[[group]]\nname = "open"\nnetwork = { outbound = true, allow = ["pypi.org", "*.githubusercontent.com", "203.0.113.0/24", "198.51.100.7"] }\n' +
      '[[group]]\nname = "wide"\nnetwork = { outbound = true }\n[[group]]\nname = "closed"\n[group.network]\noutbound = false\n' +
      '[[group]]\nname = "legacy"\nlocal_only = false\n' +
      svc('a', 'group = "open"') + svc('b', 'group = "wide"') + svc('c', 'group = "closed"') + svc('d', 'group = "legacy"') + svc('e'),
  );
  const [a, b, c, d, e] = resolveServices(cfg);
  assert.equal(a?.localOnly, false);
  assert.deepEqual(a?.egressAllow, ['pypi.org', '*.githubusercontent.com', '203.0.113.0/24', '198.51.100.7']);
  assert.equal(b?.localOnly, false);
  assert.equal(b?.egressAllow, undefined, 'no allow: any public address, as local_only = false');
  assert.equal(c?.localOnly, true);
  assert.equal(d?.localOnly, false, 'local_only = false keeps working');
  assert.equal(d?.egressAllow, undefined);
  assert.equal(e?.localOnly, true);
});

test('group network: contradictions, a bare allow, empty lists, duplicates and bad entries name their field and line', () => {
  rejects(
    '[[group]]\nname = "g"\nlocal_only = false\nnetwork = { outbound = true }\n' +
      '[[group]]\nname = "h"\nnetwork = { outbound = false, allow = ["pypi.org"] }\n' +
      '[[group]]\nname = "i"\nnetwork = { allow = ["pypi.org"] }\n' +
      '[[group]]\nname = "j"\nnetwork = { outbound = true, allow = [] }\n' +
      '[[group]]\nname = "k"\nnetwork = { outbound = true, allow = ["PyPI.org", "pypi.org.", "10.1.2.3", "169.254.169.254", "100.127.0.0/16", "2001:db8::1", "203.0.113.5/24", "pypi.org:443", "*", "*.com", "a.*.com", "x", "1.2.3", "bär.de", "-a.com"] }\n',
    [
      '3:1 group[0].local_only: set either local_only or network, not both: network replaces local_only (local_only = false is network = { outbound = true }, local_only = true is network = { outbound = false })',
      '7:1 group[1].network.allow: allow needs outbound = true: with outbound = false the group has no way out to allow',
      '10:1 group[2].network.outbound: is required',
      '13:1 group[3].network.allow: an empty allow-list allows nothing: leave allow out for unrestricted outbound access, or turn outbound off',
      '16:1 group[4].network.allow[2]: 10.1.2.3 lies in 10.0.0.0/8 (private): guests never reach private, loopback, link-local, CGNAT or multicast addresses (docs/NETWORK.md)',
      '16:1 group[4].network.allow[3]: 169.254.169.254 lies in 169.254.0.0/16 (link-local, cloud metadata): guests never reach private, loopback, link-local, CGNAT or multicast addresses (docs/NETWORK.md)',
      '16:1 group[4].network.allow[4]: 100.127.0.0/16 lies in 100.64.0.0/10 (CGNAT, and the egress pool): guests never reach private, loopback, link-local, CGNAT or multicast addresses (docs/NETWORK.md)',
      '16:1 group[4].network.allow[5]: "2001:db8::1": IPv6 is not supported (the outbound path is IPv4 only)',
      '16:1 group[4].network.allow[6]: "203.0.113.5/24" has host bits set (did you mean 203.0.113.0/24?)',
      '16:1 group[4].network.allow[7]: "pypi.org:443": ports are not part of an entry (every port of an allowed destination is allowed)',
      '16:1 group[4].network.allow[8]: "*" would allow every name: leave allow out for unrestricted outbound access',
      '16:1 group[4].network.allow[9]: "*.com" covers a whole top-level domain; name at least two labels (*.example.com)',
      '16:1 group[4].network.allow[10]: "a.*.com": "*" may only stand alone as the first label, as in *.example.com',
      '16:1 group[4].network.allow[11]: "x" is a single-label name; allow fully qualified names (pypi.org)',
      '16:1 group[4].network.allow[12]: "1.2.3" is not an IPv4 address',
      '16:1 group[4].network.allow[13]: "bär.de": only ASCII is allowed (write internationalised names in punycode, xn--…)',
      '16:1 group[4].network.allow[14]: "-a.com": label "-a" is not a DNS label (a-z, 0-9, "-", "_"; 1..63 characters; no "-" at either end)',
      // The cross-field rules come after the schema's at the same spot.
      '16:1 group[4].network.allow[1]: duplicate entry "pypi.org" (also group[4].network.allow[0])',
    ],
  );
});
