import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GroupSwitch } from './group-switch.js';

/**
 * The group switches of one backend instance: one GroupSwitch per group key,
 * opened by the group's first VM and closed with its last, so every VM of a
 * group (and only those) shares one segment.
 */
export class GroupSwitches {
  private readonly open = new Map<string, { sw: GroupSwitch; dir: string; members: number }>();
  private readonly opening = new Map<string, Promise<{ sw: GroupSwitch; dir: string; members: number }>>();

  /** The group's switch, opened if this is its first member; pair with leave(). */
  async join(group: string): Promise<GroupSwitch> {
    const existing = this.open.get(group);
    if (existing) {
      existing.members++;
      return existing.sw;
    }
    let opening = this.opening.get(group);
    if (!opening) {
      opening = (async () => {
        const dir = await mkdtemp(join(tmpdir(), 'mcnet-'));
        const sw = await GroupSwitch.listen(join(dir, 'switch.sock'));
        const entry = { sw, dir, members: 0 };
        this.open.set(group, entry);
        return entry;
      })();
      this.opening.set(group, opening);
      opening.finally(() => this.opening.delete(group)).catch(() => {});
    }
    const entry = await opening;
    entry.members++;
    return entry.sw;
  }

  /** One member left; the last one closes the switch. */
  async leave(group: string): Promise<void> {
    const entry = this.open.get(group);
    if (!entry) return;
    entry.members--;
    if (entry.members <= 0) {
      this.open.delete(group);
      await entry.sw.close();
      await rm(entry.dir, { recursive: true, force: true });
    }
  }
}
