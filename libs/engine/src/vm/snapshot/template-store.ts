import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MonocoreError } from '../../errors/index.js';
import type { MonocoreHome } from '../../home/index.js';
import { HostLock } from '../../rootfs/host-lock.js';
import { checkVmStateSize, type VmStateDigest } from './vm-state-file.js';

/**
 * Everything that shapes a saved VM: a template restores only into a QEMU whose every
 * entry here is equal (checked field by field from meta.json, not trusted from the
 * directory name). Per-VM identity (hostname, env, workdir, user, addresses) is not
 * in it: templates are booted with a neutral one and every VM gets its own through the
 * agent's REFRESH after restore (docs/SNAPSHOTS.md).
 */
export interface TemplateShape {
  /** Bumped when what a template holds or how it is restored changes. */
  format: number;
  monocore: string;
  /** `qemu-system-x86_64 --version`. */
  qemu: string;
  /** The guest kernel file (path, size, mtime) and the initramfs' content hash (init + agent build). */
  kernel: string;
  initramfs: string;
  /** The image: its id and its block image file (size, mtime: a rebuilt one is another filesystem). */
  imageId: string;
  imageBlock: string;
  /** sha256 of QEMU's argv with fds and paths normalised away: machine, accelerator, CPU model, RAM, vCPUs, kernel command line, every device. */
  machine: string;
  /** KVM/HVF: the host CPU's feature flags (a template made on another CPU may use features this one lacks); "" under TCG, whose CPU model is QEMU's own. */
  hostCpu: string;
  /** sha256 of the neutral guest spec the template booted with (disk, image, capabilities, rlimits, NIC count). */
  guest: string;
  diskMib: number;
  /** Guest RAM (also in `machine`; here for people reading meta.json). */
  ramMib: number;
}

export interface TemplateMeta {
  shape: TemplateShape;
  state: VmStateDigest;
  createdAt: string;
  /** Wall time of the save (for bench and logs). */
  saveMs: number;
  /**
   * The guest's NIC MACs as the template was saved with them, in order: a VM restored from it
   * is told its own through REFRESH (group members share one template; vm-templates.ts).
   */
  macs: string[];
}

/** A template on disk: the VM state, the writable disk at the moment of the save, and meta.json. */
export interface Template {
  dir: string;
  key: string;
  meta: TemplateMeta;
  statePath: string;
  upperPath: string;
}

/** 2: meta.json holds the saved guest's MACs (templates no longer keyed by a group member's MAC). */
export const TEMPLATE_FORMAT = 2;
const DEFAULT_BUDGET_MIB = 2048;

export function templateKey(shape: TemplateShape): string {
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 32);
}

function imageHex(imageId: string): string {
  return imageId.replace(/^sha256:/, '');
}

/**
 * Templates of one host, kept beside their image (`rootfs/images/<image>/templates/<key>/`),
 * so `image rm` and `image prune` remove them with it; a size budget (MONOCORE_TEMPLATE_BUDGET_MIB,
 * default 2048) prunes the least recently used. Written to a temp dir and renamed into place:
 * a reader sees a whole template or none.
 */
export class TemplateStore {
  readonly budgetBytes: number;

  constructor(readonly home: MonocoreHome, budgetMib = budgetFromEnv()) {
    this.budgetBytes = budgetMib * 1024 * 1024;
  }

  templatesDir(imageId: string): string {
    return join(this.home.imageRootfsDir, imageHex(imageId), 'templates');
  }

  dir(shape: TemplateShape): string {
    return join(this.templatesDir(shape.imageId), templateKey(shape));
  }

  /**
   * The template for `shape`, or why there is none. A template whose meta does not match
   * the shape field for field, or whose state file is missing or of the wrong size, is
   * deleted (it can never be used) and reported as absent with the reason.
   */
  async lookup(shape: TemplateShape): Promise<{ template?: Template; reason: string }> {
    const dir = this.dir(shape);
    let meta: TemplateMeta;
    try {
      meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as TemplateMeta;
    } catch {
      return { reason: 'no template yet for this image and VM shape' };
    }
    const t: Template = { dir, key: templateKey(shape), meta, statePath: join(dir, 'state.bin'), upperPath: join(dir, 'upper.ext4') };
    const differs = Object.keys(shape).find((k) => JSON.stringify(meta.shape?.[k as keyof TemplateShape]) !== JSON.stringify(shape[k as keyof TemplateShape]));
    if (differs !== undefined) {
      await this.remove(t);
      return { reason: `the template's ${differs} differs from this VM's (deleted)` };
    }
    try {
      await checkVmStateSize(t.statePath, meta.state);
      if (!(await stat(t.upperPath)).isFile()) throw new Error('upper.ext4 is not a file');
    } catch (err) {
      await this.remove(t);
      return { reason: `${(err as Error).message} (template deleted)` };
    }
    const now = new Date();
    await utimes(join(dir, 'meta.json'), now, now).catch(() => undefined); // least recently used goes first
    return { template: t, reason: 'template found' };
  }

  /**
   * The right to build the template of `shape` on this host (a file lock), or undefined
   * when another VM is building it now: concurrent first starts build it once, the others
   * boot cold meanwhile.
   */
  async claim(shape: TemplateShape): Promise<HostLock | undefined> {
    const base = this.templatesDir(shape.imageId);
    await mkdir(base, { recursive: true });
    return HostLock.tryAcquire(join(base, `${templateKey(shape)}.lock`));
  }

  /** A fresh temp dir next to the final one, for the files of a template being saved. */
  async stage(shape: TemplateShape): Promise<string> {
    const tmp = `${this.dir(shape)}.${process.pid}.${Date.now()}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    return tmp;
  }

  /** Publishes a staged template (state.bin and upper.ext4 written into `staged`), then applies the budget. */
  async commit(shape: TemplateShape, staged: string, meta: Omit<TemplateMeta, 'shape'>): Promise<Template> {
    const full: TemplateMeta = { shape, ...meta };
    await writeFile(join(staged, 'meta.json'), `${JSON.stringify(full, null, 2)}\n`);
    const dir = this.dir(shape);
    await rm(dir, { recursive: true, force: true });
    await rename(staged, dir);
    await this.prune().catch(() => undefined);
    return { dir, key: templateKey(shape), meta: full, statePath: join(dir, 'state.bin'), upperPath: join(dir, 'upper.ext4') };
  }

  async remove(t: Pick<Template, 'dir'>): Promise<void> {
    await rm(t.dir, { recursive: true, force: true });
  }

  /** Every template of this host, with its disk use (allocated blocks: the files are sparse) and last use. */
  async list(): Promise<Array<{ dir: string; bytes: number; usedMs: number }>> {
    const out: Array<{ dir: string; bytes: number; usedMs: number }> = [];
    const images = await readdir(this.home.imageRootfsDir).catch(() => [] as string[]);
    for (const img of images) {
      const base = join(this.home.imageRootfsDir, img, 'templates');
      for (const name of await readdir(base).catch(() => [] as string[])) {
        if (!/^[0-9a-f]{32}$/.test(name)) continue;
        const dir = join(base, name);
        let bytes = 0;
        for (const f of ['state.bin', 'upper.ext4', 'meta.json']) {
          const st = await stat(join(dir, f)).catch(() => undefined);
          if (st) bytes += st.blocks * 512;
        }
        const usedMs = (await stat(join(dir, 'meta.json')).catch(() => undefined))?.mtimeMs ?? 0;
        out.push({ dir, bytes, usedMs });
      }
    }
    return out;
  }

  /** Removes the least recently used templates until the rest fit the budget. */
  async prune(): Promise<string[]> {
    const all = (await this.list()).sort((a, b) => b.usedMs - a.usedMs);
    let total = 0;
    const removed: string[] = [];
    for (const t of all) {
      total += t.bytes;
      if (total > this.budgetBytes) {
        await this.remove(t);
        removed.push(t.dir);
      }
    }
    return removed;
  }
}

function budgetFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.MONOCORE_TEMPLATE_BUDGET_MIB;
  if (v === undefined || v === '') return DEFAULT_BUDGET_MIB;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    throw new MonocoreError('MC_USAGE', `MONOCORE_TEMPLATE_BUDGET_MIB must be a whole number of MiB (0 keeps no template), got ${JSON.stringify(v)}`, { value: v });
  }
  return n;
}
