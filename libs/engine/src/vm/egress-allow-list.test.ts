import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EgressAllowList, egressBlockedRange, parseEgressAllowEntry } from './egress-allow-list.js';
import { outboundNetwork } from './outbound-network.js';

test('entries: names (any case, trailing dot), *.suffix, IPv4, CIDR (/32 is an address)', () => {
  assert.deepEqual(parseEgressAllowEntry('PyPI.org.'), { ok: true, value: { kind: 'name', name: 'pypi.org' } });
  assert.deepEqual(parseEgressAllowEntry('*.GitHubUserContent.com'), { ok: true, value: { kind: 'suffix', suffix: 'githubusercontent.com' } });
  assert.deepEqual(parseEgressAllowEntry('203.0.113.7'), { ok: true, value: { kind: 'address', address: '203.0.113.7' } });
  assert.deepEqual(parseEgressAllowEntry('203.0.113.0/24'), { ok: true, value: { kind: 'range', cidr: '203.0.113.0/24' } });
  assert.deepEqual(parseEgressAllowEntry('203.0.113.9/32'), { ok: true, value: { kind: 'address', address: '203.0.113.9' } });
  assert.deepEqual(parseEgressAllowEntry('_acme-challenge.example.com'), { ok: true, value: { kind: 'name', name: '_acme-challenge.example.com' } });
  for (const bad of ['', ' pypi.org', '010.1.2.3', '1.2.3.4/33', '1.2.3.4/08', '1.2.3.256', '::1', 'fe80::/10', `${'a'.repeat(64)}.com`, 'a..b', '0.0.0.0/0x']) {
    assert.equal(parseEgressAllowEntry(bad).ok, false, bad);
  }
  // A range overlapping (not inside) a blocked one is allowed: the blocked part stays blocked on the host.
  assert.equal(parseEgressAllowEntry('0.0.0.0/0').ok, true);
  assert.equal(parseEgressAllowEntry('192.0.0.0/8').ok, true);
  assert.equal(parseEgressAllowEntry('192.168.0.0/24').ok, false);
});

test('allowsName: exact names, and wildcards below (not at) their suffix', () => {
  const list = EgressAllowList.parse(['pypi.org', '*.githubusercontent.com', '203.0.113.0/24', '198.51.100.7']);
  assert.equal(list.allowsName('pypi.org'), true);
  assert.equal(list.allowsName('PYPI.ORG.'), true);
  assert.equal(list.allowsName('files.pypi.org'), false);
  assert.equal(list.allowsName('evilpypi.org'), false);
  assert.equal(list.allowsName('raw.githubusercontent.com'), true);
  assert.equal(list.allowsName('a.b.githubusercontent.com'), true);
  assert.equal(list.allowsName('githubusercontent.com'), false);
  assert.equal(list.allowsName('xgithubusercontent.com'), false);
  assert.equal(list.allowsName('githubusercontent.com.evil.net'), false);
  assert.deepEqual(list.ranges, ['203.0.113.0/24', '198.51.100.7']);
});

test('EgressAllowList.parse: MC_VM_EGRESS_ALLOW_INVALID names the entry; every problem in details.issues', () => {
  assert.throws(() => EgressAllowList.parse(['pypi.org', '10.0.0.1', 'pypi.org'], 'network.allow'), (err: Error & { code?: string; details?: Record<string, unknown> }) => {
    assert.equal(err.code, 'MC_VM_EGRESS_ALLOW_INVALID');
    assert.equal(err.details?.field, 'network.allow[1]');
    assert.match(err.message, /^network\.allow\[1\]: 10\.0\.0\.1 lies in 10\.0\.0\.0\/8 \(private\)/);
    assert.deepEqual((err.details?.issues as Array<{ path: string }>).map((i) => i.path), ['network.allow[1]', 'network.allow[2]']);
    return true;
  });
  assert.throws(() => EgressAllowList.parse([]), { code: 'MC_VM_EGRESS_ALLOW_INVALID', message: /^network\.allow: an empty allow-list allows nothing/ });
  assert.throws(() => EgressAllowList.parse([42], 'body.allow'), { code: 'MC_VM_EGRESS_ALLOW_INVALID', message: 'body.allow[0]: must be a string' });
  assert.throws(() => EgressAllowList.parse('pypi.org' as unknown as string[]), { code: 'MC_VM_EGRESS_ALLOW_INVALID' });
});

test('egressBlockedRange: what the resolver refuses to admit', () => {
  for (const [ip, range] of [['10.250.0.2', '10.0.0.0/8'], ['127.0.0.1', '127.0.0.0/8'], ['169.254.169.254', '169.254.0.0/16'], ['100.127.0.1', '100.64.0.0/10'], ['172.31.255.255', '172.16.0.0/12'], ['192.168.1.1', '192.168.0.0/16'], ['0.0.0.0', '0.0.0.0/8'], ['239.1.1.1', '224.0.0.0/3'], ['255.255.255.255', '224.0.0.0/3']] as const) {
    assert.match(egressBlockedRange(ip) ?? '', new RegExp(`^${range.replace(/\./g, '\\.')} `), ip);
  }
  for (const ip of ['198.18.0.2', '203.0.113.7', '8.8.8.8', '172.32.0.1', '100.63.255.255']) assert.equal(egressBlockedRange(ip), undefined, ip);
});

test('outboundNetwork: one call for a lone VM with an allow-list (sandboxes), validated up front', () => {
  assert.deepEqual(outboundNetwork('sbx-1', ['PyPI.org', '203.0.113.0/24']), {
    mode: 'group', group: 'sbx-1', address: '10.88.0.2/24', peers: {}, localOnly: false, allow: ['pypi.org', '203.0.113.0/24'],
  });
  assert.deepEqual(outboundNetwork('sbx-2'), { mode: 'group', group: 'sbx-2', address: '10.88.0.2/24', peers: {}, localOnly: false });
  assert.throws(() => outboundNetwork('sbx-3', ['fd00::1'], 'network.allow'), { code: 'MC_VM_EGRESS_ALLOW_INVALID', message: /^network\.allow\[0\]: "fd00::1": IPv6/ });
});
