/**
 * Conformance suite for HypervisorBackend implementations (containerd-style
 * testsuite): every backend runs it with its own factory. The qemu backend runs
 * it against real TCG boots (test/vm/qemu-backend.test.ts); the libkrun backend
 * runs the parts its labelled stub can honour.
 *
 * Each check boots a real VM; keep them few — several assertions per boot.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMonocoreError, type HypervisorBackend, type VmSpec } from '@monocore/engine';
import type { Writable } from 'node:stream';

export interface CollectingStream extends Writable {
  readonly text: string;
}

export interface ConformanceContext {
  backend: HypervisorBackend;
  /** A spec for a VM booting the suite's busybox rootfs, with collecting stdout/stderr. */
  spec(id: string, over?: Partial<VmSpec>): VmSpec & { stdout: CollectingStream; stderr: CollectingStream };
}

export interface ConformanceOptions {
  /** Skip-free subsets: a backend lists the groups it supports (default all). */
  groups?: Array<'exit-codes' | 'argv-env' | 'lifecycle' | 'validation'>;
}

export function hypervisorBackendSuite(name: string, make: () => ConformanceContext, options: ConformanceOptions = {}): void {
  const groups = new Set(options.groups ?? ['exit-codes', 'argv-env', 'lifecycle', 'validation']);

  if (groups.has('validation')) {
    test(`${name}: available() reports usable with an accelerator`, async () => {
      const { backend } = make();
      const a = await backend.available();
      assert.equal(a.available, true, a.available ? '' : a.reason);
    });

    test(`${name}: invalid specs are rejected naming the field`, async () => {
      const { backend, spec } = make();
      const cases: Array<[Partial<VmSpec>, string]> = [
        [{ ramMib: 1 }, 'ramMib'],
        [{ cpus: 0 }, 'cpus'],
        [{ env: ['NOEQUALS'] }, 'env[0]'],
        [{ args: ['ok', 'nul\0byte'] }, 'args[1]'],
        [{ ports: [{ host: 70000, guest: 80 }] }, 'ports[0].host'],
        [{ volumes: [{ host: '/definitely/not/here', guest: '/data' }] }, 'volumes[0].host'],
        [{ workdir: 'relative' }, 'workdir'],
      ];
      for (const [over, field] of cases) {
        await assert.rejects(backend.start(spec('bad', over)), (e: unknown) => {
          assert.ok(isMonocoreError(e), `expected MonocoreError for ${field}, got ${String(e)}`);
          assert.ok(e.message.includes(field), `message "${e.message}" names ${field}`);
          return true;
        });
      }
    });
  }

  if (groups.has('argv-env')) {
    test(`${name}: argv, env, workdir and separate stdout/stderr survive exactly`, async () => {
      const { backend, spec } = make();
      const args = ['a b', '"double"', "it's", 'ünïcødé ✓ 日本', '', 'line1\nline2', '$HOME `x` \\n', '*', '  lead'];
      const s = spec('argv', {
        command: '/bin/sh',
        args: [
          '-c',
          'printf "argc=%s\\n" "$#"; for a in "$@"; do printf "<%s>\\n" "$a"; done; ' +
            'printf "FOO=<%s> EMPTY=<%s> MULTI=<%s>\\n" "$FOO" "$EMPTY" "$MULTI"; pwd; echo to-stderr >&2; exit 7',
          'argv0',
          ...args,
        ],
        env: ['PATH=/bin', 'FOO=x y=z', 'EMPTY=', 'MULTI=one\ntwo', 'FOO=later wins'],
        workdir: '/tmp',
      });
      const h = await backend.start(s);
      await h.started;
      const exit = await h.wait();
      assert.deepEqual(exit, { exitCode: 7, reason: 'exited' });
      const expected =
        `argc=${args.length}\n` +
        args.map((a) => `<${a}>\n`).join('') +
        'FOO=<later wins> EMPTY=<> MULTI=<one\ntwo>\n/tmp\n';
      assert.equal(s.stdout.text, expected);
      assert.equal(s.stderr.text, 'to-stderr\n');
    });
  }

  if (groups.has('exit-codes')) {
    test(`${name}: exit codes 0, 1, 126, 127 and 128+N propagate`, async () => {
      const { backend, spec } = make();
      const cases: Array<{ id: string; over: Partial<VmSpec>; code: number; started: boolean; stderr?: RegExp }> = [
        { id: 'true', over: { command: '/bin/true' }, code: 0, started: true },
        { id: 'false', over: { command: 'false' }, code: 1, started: true }, // found through PATH
        { id: 'noexec', over: { command: '/etc/passwd' }, code: 126, started: false, stderr: /exec \/etc\/passwd: Permission denied/ },
        { id: 'missing', over: { command: '/no/such/binary' }, code: 127, started: false, stderr: /No such file or directory/ },
        { id: 'signal', over: { command: '/bin/sh', args: ['-c', 'kill -KILL $$'] }, code: 137, started: true },
      ];
      // Two at a time: TCG boots are CPU-bound and the machine has 2 cores.
      for (let i = 0; i < cases.length; i += 2) {
        await Promise.all(
          cases.slice(i, i + 2).map(async (c) => {
            const s = spec(c.id, c.over);
            const h = await backend.start(s);
            const startedOk = await h.started.then(() => true, () => false);
            const exit = await h.wait();
            assert.equal(exit.exitCode, c.code, `${c.id}: ${JSON.stringify(exit)} stderr=${s.stderr.text}`);
            assert.equal(exit.reason, 'exited', c.id);
            assert.equal(startedOk, c.started, `${c.id}: started resolved=${startedOk}`);
            if (c.stderr) assert.match(s.stderr.text, c.stderr, c.id);
          }),
        );
      }
    });
  }

  if (groups.has('lifecycle')) {
    test(`${name}: stop() is graceful (SIGTERM reaches the command), kill() is immediate, both idempotent`, async () => {
      const { backend, spec } = make();
      const a = spec('stopme', { command: '/bin/sh', args: ['-c', 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 1; done'] });
      const b = spec('killme', { command: '/bin/sleep', args: ['1000'] });
      const [ha, hb] = await Promise.all([backend.start(a), backend.start(b)]);
      await Promise.all([ha.started, hb.started]);
      // wait until the trap is installed (the shell printed "ready")
      for (let i = 0; i < 100 && !a.stdout.text.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
      const [ea, eb] = await Promise.all([ha.stop({ timeoutMs: 20_000 }), hb.kill()]);
      assert.deepEqual(ea, { exitCode: 42, reason: 'stopped' });
      assert.match(a.stdout.text, /got-term/);
      assert.equal(eb.reason, 'killed');
      assert.deepEqual(await ha.stop(), ea, 'stop after exit returns the same result');
      assert.deepEqual(await hb.kill(), eb, 'kill after exit returns the same result');
      assert.deepEqual(await hb.wait(), eb);
    });
  }
}
