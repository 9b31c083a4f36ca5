import assert from 'node:assert/strict';
import { test } from 'node:test';
import { egressUnavailable, hostResolvers } from './egress-network.js';

test('egressUnavailable names what is missing', () => {
  const why = egressUnavailable({ PATH: '/nonexistent' });
  if (process.getuid?.() === 0) assert.equal(why, 'passt not found (apt-get install passt)');
  else assert.match(why ?? '', /needs root/);
});

test('hostResolvers: IPv4 upstreams only; systemd-resolved\'s stub replaced by its upstreams', () => {
  const files: Record<string, string> = {
    '/etc/resolv.conf': '# stub\nnameserver 127.0.0.53\noptions edns0\n',
    '/run/systemd/resolve/resolv.conf': 'nameserver 10.0.0.2\nnameserver 2001:db8::1\nnameserver 1.1.1.1\n',
  };
  assert.deepEqual(hostResolvers((p) => files[p]), ['10.0.0.2', '1.1.1.1']);
  assert.deepEqual(hostResolvers((p) => (p === '/etc/resolv.conf' ? 'nameserver 9.9.9.9\nnameserver 9.9.9.9\n' : undefined)), ['9.9.9.9']);
  assert.deepEqual(hostResolvers(() => undefined), []);
});
