import { accessSync, constants, existsSync } from 'node:fs';
import { platform } from 'node:os';

export type Accel = 'kvm' | 'hvf' | 'tcg';

export interface AccelChoice {
  accel: Accel;
  /** Why this accelerator (and why not the faster ones). */
  reason: string;
}

/**
 * Picks QEMU's accelerator. KVM only when /dev/kvm is usable AND the host
 * module is not kvm_pvm: on kvm_pvm hosts a stock kernel under QEMU+KVM
 * crawls and never reaches init (PLATFORM.md), so TCG it is. HVF on macOS.
 * `MONOCORE_QEMU_ACCEL=kvm|hvf|tcg` forces a choice.
 */
export function detectAccel(
  env: NodeJS.ProcessEnv = process.env,
  sys: { platform: NodeJS.Platform; exists: (path: string) => boolean } = { platform: platform(), exists: existsSync },
): AccelChoice {
  const forced = env.MONOCORE_QEMU_ACCEL;
  if (forced === 'kvm' || forced === 'hvf' || forced === 'tcg') return { accel: forced, reason: `forced by MONOCORE_QEMU_ACCEL=${forced}` };
  if (sys.platform === 'darwin') return { accel: 'hvf', reason: 'macOS Hypervisor.framework' };
  if (sys.platform !== 'linux') return { accel: 'tcg', reason: `no hardware acceleration support on ${sys.platform}` };
  if (sys.exists('/sys/module/kvm_pvm')) {
    return { accel: 'tcg', reason: 'KVM here is kvm_pvm (/sys/module/kvm_pvm): guests crawl under it, using TCG software emulation' };
  }
  if (!sys.exists('/dev/kvm')) return { accel: 'tcg', reason: '/dev/kvm does not exist: using TCG software emulation' };
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is not accessible to this user: using TCG software emulation' };
  }
  return { accel: 'kvm', reason: '/dev/kvm usable (kvm_intel/kvm_amd)' };
}

/** The host TSC rate in kHz (PLATFORM.md: tsc_early_khz avoids a calibration hang under TCG). */
export function hostTscKhz(cpuinfo: string): number | undefined {
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo);
  if (!m || !m[1]) return undefined;
  const khz = Math.round(Number(m[1]) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : undefined;
}
