import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMonocoreError } from '../errors/index.js';
import { validateVmSpec } from '../vm/vm-spec-validation.js';
import { sandboxNetwork } from './sandbox-network.js';
import { parseSandboxRecord, sandboxRecordFields, toSandbox, type SandboxRecord } from './sandbox-record.js';
import { buildSandboxVmSpec } from './sandbox-vm-spec.js';

const record = (extra: Partial<SandboxRecord> = {}): SandboxRecord => ({
  id: 'sb-0123456789ab',
  status: 'creating',
  host: 'h1',
  epoch: 1,
  image: 'python:3.12',
  cpus: 1,
  ramMib: 512,
  diskMib: 1024,
  env: {},
  network: 'outbound',
  timeoutS: 600,
  createdAt: 1_700_000_000_000,
  lastActivityAt: 1_700_000_000_000,
  ...extra,
});

/** What Redis hands back: every field a string. */
const stored = (r: SandboxRecord): Record<string, string> =>
  Object.fromEntries(Object.entries(sandboxRecordFields(r)).map(([k, v]) => [k, String(v)]));

const dir = mkdtempSync(join(tmpdir(), 'mc-sandbox-network-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const stateDir = join(dir, 'state');
mkdirSync(join(dir, 'rootfs'));
mkdirSync(stateDir);
const image = { rootfs: join(dir, 'rootfs'), config: { env: ['PATH=/usr/bin:/bin'], entrypoint: [], cmd: ['python3'] } };

test('sandboxNetwork: the modes, the monocore.toml form, and the allow-list in normal form', () => {
  assert.deepEqual(sandboxNetwork(undefined), { network: 'none' });
  assert.deepEqual(sandboxNetwork('none'), { network: 'none' });
  assert.deepEqual(sandboxNetwork('outbound'), { network: 'outbound' });
  assert.deepEqual(sandboxNetwork({ outbound: true }), { network: 'outbound' });
  assert.deepEqual(sandboxNetwork({ outbound: false }), { network: 'none' });
  assert.deepEqual(sandboxNetwork({ outbound: true, allow: ['PyPI.org.', '*.githubusercontent.com', '203.0.113.0/24'] }), {
    network: 'outbound',
    allow: ['pypi.org', '*.githubusercontent.com', '203.0.113.0/24'],
  });
});

test('sandboxNetwork: a bad entry is MC_VM_EGRESS_ALLOW_INVALID naming network.allow[i]; allow needs outbound', () => {
  assert.throws(
    () => sandboxNetwork({ outbound: true, allow: ['pypi.org', '10.0.0.0/8', 'pypi.org'] }),
    (e: unknown) =>
      isMonocoreError(e, 'MC_VM_EGRESS_ALLOW_INVALID') &&
      /^network\.allow\[1\]: 10\.0\.0\.0\/8 lies in 10\.0\.0\.0\/8 \(private\)/.test(e.message) &&
      e.details.field === 'network.allow[1]' &&
      JSON.stringify((e.details.issues as Array<{ path: string }>).map((i) => i.path)) === '["network.allow[1]","network.allow[2]"]',
  );
  assert.throws(() => sandboxNetwork({ outbound: true, allow: [] }), { code: 'MC_VM_EGRESS_ALLOW_INVALID', message: /^network\.allow: an empty allow-list/ });
  assert.throws(() => sandboxNetwork({ outbound: false, allow: ['pypi.org'] }), { code: 'MC_VM_EGRESS_ALLOW_INVALID', message: /^network\.allow: allow needs outbound: true/ });
});

test('the record keeps the allow-list (network_allow, JSON) and the sandbox object shows it only when set', () => {
  const withList = record({ allow: ['pypi.org', '203.0.113.0/24'] });
  const fields = sandboxRecordFields(withList);
  assert.equal(fields.network_allow, '["pypi.org","203.0.113.0/24"]');
  assert.deepEqual(parseSandboxRecord(withList.id, stored(withList)), withList);
  assert.deepEqual(toSandbox(withList).network_allow, ['pypi.org', '203.0.113.0/24']);
  assert.equal(toSandbox(withList).network, 'outbound');

  const open = record();
  assert.equal('network_allow' in sandboxRecordFields(open), false);
  assert.deepEqual(parseSandboxRecord(open.id, stored(open)), open);
  assert.equal('network_allow' in toSandbox(open), false);
});

test('a damaged stored allow-list fails closed: an empty list, which the VM spec refuses', () => {
  const h = { ...stored(record()), network_allow: '{not json' };
  const rec = parseSandboxRecord('sb-0123456789ab', h);
  assert.deepEqual(rec.allow, []);
  assert.throws(() => buildSandboxVmSpec(rec, image, stateDir), { code: 'MC_VM_EGRESS_ALLOW_INVALID' });
  assert.deepEqual(parseSandboxRecord('sb-0123456789ab', { ...h, network_allow: '[1]' }).allow, []);
});

test('buildSandboxVmSpec: the allow-list reaches the VM network (outboundNetwork, as for services and monocore run)', () => {
  const spec = buildSandboxVmSpec(record({ allow: ['pypi.org', '*.pythonhosted.org'] }), image, stateDir);
  assert.deepEqual(spec.network, {
    mode: 'group', group: 'sb-0123456789ab', address: '10.88.0.2/24', peers: {}, localOnly: false, allow: ['pypi.org', '*.pythonhosted.org'],
  });
  validateVmSpec(spec);
  assert.deepEqual(buildSandboxVmSpec(record(), image, stateDir).network, {
    mode: 'group', group: 'sb-0123456789ab', address: '10.88.0.2/24', peers: {}, localOnly: false,
  });
  assert.deepEqual(buildSandboxVmSpec(record({ network: 'none' }), image, stateDir).network, { mode: 'none' });
});

test('the writable disk size: stored, shown, given to the VM; records from before it read as the default', () => {
  const rec = record({ diskMib: 256 });
  assert.equal(sandboxRecordFields(rec).disk_mib, 256);
  assert.equal(toSandbox(rec).disk, 256);
  assert.equal(buildSandboxVmSpec(rec, image, stateDir).diskMib, 256);
  const { disk_mib: _, ...old } = stored(rec);
  assert.equal(parseSandboxRecord(rec.id, old).diskMib, 4096);
});
