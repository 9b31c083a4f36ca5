/**
 * A hostile guest in a real VM (TCG): a root process kills the guest agent, takes its port and
 * writes garbage; the host ends the session with MC_AGENT_PROTOCOL_ERROR and carries on. The
 * attacker races init's respawn of the agent, so this file runs alone among the VM tests
 * (aloneAmongVmTests): under a loaded machine the race was lost for longer than the host's
 * liveness timeout and the session ended MC_AGENT_UNRESPONSIVE instead.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isMonocoreError } from '@monocore/engine';
import { aloneAmongVmTests, backend, spec } from './vm-fixtures.js';

aloneAmongVmTests();

describe('a hostile guest on the agent port', () => {
  test('garbage from the guest ends the session with MC_AGENT_PROTOCOL_ERROR; the host carries on and can still kill the VM', async () => {
    const vm = await backend().start(spec('agent-hostile', { sandbox: true, command: '', args: [], env: ['PATH=/bin'] }));
    try {
      await vm.started;
      const a = await vm.agent();
      const victim = await a.spawn({ argv: ['sleep', '300'] });
      // A root process in the guest kills the agent, takes its port and writes garbage
      // (the agent's last frames may still precede it: the host must stop at the first bad byte).
      // Init respawns the agent a second later; on a loaded machine the respawned agent can get
      // the port first, so every agent (a fork of /init: comm "init", any pid but 1) is killed
      // until the attacker has the port — with shell builtins only: forks crawl under TCG.
      const attack = [
        'for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name)" = monocore.agent ] && dev=/dev/${p##*/}; done',
        'agents() { for p in /proc/[0-9]*; do read -r c < "$p/comm" && [ "$c" = init ] && [ "${p#/proc/}" != 1 ] && kill -9 "${p#/proc/}"; done 2>/dev/null; }',
        `kill -9 ${a.info.pid}`,
        // `command`: a failed redirection of the special builtin `exec` would end a POSIX shell.
        'until command exec 3>"$dev"; do agents; done 2>/dev/null',
        'head -c 1000000 /dev/urandom >&3',
        'sleep 300',
      ].join('\n');
      void a.spawn({ argv: ['sh', '-c', attack] }).catch(() => undefined);
      const reason = await a.closed;
      assert.equal(reason.code, 'MC_AGENT_PROTOCOL_ERROR', reason.message);
      await assert.rejects(victim.exit, (e) => isMonocoreError(e, 'MC_AGENT_PROTOCOL_ERROR'));
      await assert.rejects(vm.agent(), (e) => isMonocoreError(e, 'MC_AGENT_PROTOCOL_ERROR'));
      const exit = await vm.kill();
      assert.equal(exit.reason, 'killed');
    } finally {
      await vm.kill();
    }
  });
});
