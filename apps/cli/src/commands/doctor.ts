import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import type { Command } from 'commander';
import { isMonocoreError } from '@monocore/engine/errors';
import { MonocoreHome } from '@monocore/engine/home';
import { EGRESS_POOL, QemuBackend, chooseBackend, detectAccel, egressUnavailable, findGuestKernel, probeBackends, type BackendName } from '@monocore/engine/vm';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
}

/** PING a Redis URL over a raw socket (AUTH first when the URL has credentials), with a short timeout. */
export async function pingRedis(url: string, timeoutMs = 1500): Promise<{ ok: boolean; detail: string }> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, detail: `MONOCORE_REDIS_URL ${JSON.stringify(url)} is not a URL` };
  }
  if (u.protocol !== 'redis:') return { ok: false, detail: `${u.protocol} is not supported here (use redis://host:port)` };
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || 6379);
  const cmd = (...args: string[]): string => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  const auth = u.password ? cmd('AUTH', ...(u.username ? [decodeURIComponent(u.username)] : []), decodeURIComponent(u.password)) : '';
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let buf = '';
    const done = (ok: boolean, detail: string): void => {
      sock.destroy();
      clearTimeout(timer);
      resolve({ ok, detail });
    };
    const timer = setTimeout(() => done(false, `${host}:${port}: no answer within ${timeoutMs} ms`), timeoutMs);
    sock.on('connect', () => sock.write(auth + cmd('PING')));
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('+PONG')) done(true, `${host}:${port} answered PONG`);
      else if (buf.startsWith('-')) done(false, `${host}:${port}: ${buf.split('\r\n')[0]}`);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => done(false, `${host}:${port}: ${e.code ?? e.message}`));
  });
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('Report which hypervisor backends and accelerators work on this host, the guest kernel and initramfs, and Redis')
    .option('--json', 'print the report as JSON')
    .option('--boot', 'also boot a probe VM (kernel + initramfs) to prove the qemu path works end to end')
    .addHelpText('after', '\nEnvironment: MONOCORE_KERNEL_DIR, MONOCORE_REDIS_URL (default redis://127.0.0.1:6379), MONOCORE_QEMU_ACCEL, MONOCORE_BACKEND.')
    .action(async (opts: { json?: boolean; boot?: boolean }) => {
      const home = new MonocoreHome();
      const checks: Check[] = [];

      const accel = detectAccel();
      const kvmFacts = [
        `/dev/kvm ${existsSync('/dev/kvm') ? 'present' : 'absent'}`,
        ...(existsSync('/sys/module/kvm_pvm') ? ['kvm_pvm loaded'] : []),
        ...(existsSync('/sys/module/kvm_intel') ? ['kvm_intel loaded'] : []),
        ...(existsSync('/sys/module/kvm_amd') ? ['kvm_amd loaded'] : []),
      ];
      checks.push({ name: 'acceleration', status: accel.accel === 'tcg' ? 'warn' : 'ok', detail: `${accel.accel}: ${accel.reason} (${kvmFacts.join(', ')})` });

      try {
        const k = findGuestKernel();
        checks.push({ name: 'guest kernel', status: 'ok', detail: `${k.version} in ${k.dir}` });
      } catch (err) {
        checks.push({ name: 'guest kernel', status: 'fail', detail: isMonocoreError(err) ? err.message : String(err) });
      }

      const backends = await probeBackends({ home });
      for (const b of backends) {
        const a = b.availability;
        checks.push({ name: `backend ${b.name}`, status: a.available ? 'ok' : b.name === 'libkrun' ? 'warn' : 'fail', detail: a.available ? `usable (${a.accel})${a.detail ? `: ${a.detail}` : ''}` : a.reason });
      }
      // Which backend is actually used, and why: `monocore run` and the library choose
      // (MONOCORE_BACKEND, default auto: libkrun only when its boot probe passed); worker
      // hosts (serve, monocore-worker) always run QEMU (the only backend with group
      // networks, volumes' mapped ownership and per-VM uids).
      const prefer = (process.env.MONOCORE_BACKEND || 'auto') as BackendName | 'auto';
      const choice = chooseBackend(backends, prefer);
      checks.push({
        name: 'backend for run',
        status: choice ? 'ok' : 'fail',
        detail: choice ? choice.reason : `none usable (${prefer === 'auto' ? 'auto' : `${prefer} requested by MONOCORE_BACKEND`})`,
      });
      const qemuReport = backends.find((b) => b.name === 'qemu');
      checks.push({
        name: 'backend for up',
        status: qemuReport?.availability.available ? 'ok' : 'fail',
        detail: `worker hosts run qemu${qemuReport?.availability.available ? ` (${qemuReport.availability.accel})${qemuReport.availability.detail ? `: ${qemuReport.availability.detail}` : ''}` : `, which is unusable here: ${qemuReport?.availability.available === false ? qemuReport.availability.reason : 'not probed'}`}`,
      });
      const qemu = backends.find((b) => b.name === 'qemu')?.backend;
      if (qemu instanceof QemuBackend && backends.find((b) => b.name === 'qemu')?.availability.available) {
        checks.push({ name: 'qemu binary', status: 'ok', detail: qemu.version() });
        try {
          const { initramfs } = await qemu.prepare();
          checks.push({ name: 'initramfs', status: 'ok', detail: `${initramfs.path} (${initramfs.modules.length} modules, ${initramfs.built ? 'built now' : 'cached'})` });
        } catch (err) {
          checks.push({ name: 'initramfs', status: 'fail', detail: err instanceof Error ? err.message : String(err) });
        }
        if (opts.boot) {
          const p = await qemu.probe();
          checks.push({ name: 'qemu boot probe', status: p.ok ? 'ok' : 'fail', detail: p.detail });
        }
      }

      // Outbound access for local_only = false / run --net outbound (docs/NETWORK.md).
      const egress = egressUnavailable();
      checks.push({
        name: 'outbound network',
        status: egress ? 'warn' : 'ok',
        detail: egress ? `unavailable: ${egress} (local_only = false and run --net outbound fail here)` : `passt + nftables, guests in ${EGRESS_POOL}, never the host`,
      });

      const redisUrl = process.env.MONOCORE_REDIS_URL || 'redis://127.0.0.1:6379';
      const r = await pingRedis(redisUrl);
      // `monocore run` needs no Redis; up/serve/worker do.
      checks.push({ name: 'redis', status: r.ok ? 'ok' : 'warn', detail: `${redisUrl}: ${r.detail}${r.ok ? '' : ' (needed by up/down/status/serve, not by run)'}` });

      const usable = backends.some((b) => b.availability.available);
      if (opts.json) {
        process.stdout.write(
          `${JSON.stringify({
            ok: usable && !checks.some((c) => c.status === 'fail'),
            checks,
            backends: backends.map((b) => ({ name: b.name, ...b.availability })),
            selected: { run: choice ?? null, up: { name: 'qemu' } },
          })}\n`,
        );
      } else {
        const mark = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' } as const;
        for (const c of checks) process.stdout.write(`[${mark[c.status]}] ${c.name.padEnd(16)} ${c.detail}\n`);
        process.stdout.write(usable ? 'monocore can run VMs on this host.\n' : 'monocore cannot run VMs on this host: see the FAIL lines above.\n');
      }
      process.exitCode = usable && !checks.some((c) => c.status === 'fail') ? 0 : 1;
    });
}
