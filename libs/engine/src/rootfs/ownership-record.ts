/**
 * What an unpack could not (or must not) put on the host filesystem, written
 * as `<image dir>/ownership.json` beside `<image dir>/rootfs/` so the VM layer
 * can apply it inside the guest.
 *
 * Format (version 1), all paths relative to the rootfs, '/'-separated, no
 * leading slash, '' = the rootfs root itself:
 * ```json
 * {
 *   "version": 1,
 *   "imageId": "sha256:…",
 *   "ownershipRecorded": true,        // false: uid/gid are real on the host (unpacked as root)
 *   "defaultOwner": { "uid": 0, "gid": 0 },
 *   "owners": [ { "path": "home/app", "uid": 1000, "gid": 1000 } ],
 *   "devices": [ { "path": "dev/null", "type": "char", "major": 1, "minor": 3, "mode": 438, "uid": 0, "gid": 0 } ]
 * }
 * ```
 * - `owners` is filled only when `ownershipRecorded` is true (unpacked by a
 *   non-root user): then every path of the rootfs belongs to `defaultOwner`
 *   except those listed. Host files carry the right permission bits (setuid,
 *   setgid and sticky included); only their owner is the unpacking user.
 *   Hardlinks appear under each of their names.
 * - `devices` always lists device nodes and FIFOs of the image: they are never
 *   created on the host (a layer could otherwise plant /dev/sda or /dev/kmem).
 *   `type` is "char", "block" or "fifo"; `mode` holds the permission bits.
 * - `capabilities` (only when the image has any) lists file capabilities: the
 *   `security.capability` xattr value, base64. Unpacking as root sets them on
 *   the host files too, and the image's block filesystem carries them from
 *   there; a non-root unpacker cannot set them, so for its images the guest
 *   init applies them on its overlay from this record (rootfs/image-block.ts).
 */
export interface OwnershipRecordFile {
  version: 1;
  imageId: string;
  ownershipRecorded: boolean;
  defaultOwner: { uid: number; gid: number };
  owners: OwnerEntry[];
  devices: DeviceEntry[];
  capabilities?: CapabilityEntry[];
}

export interface CapabilityEntry {
  path: string;
  /** The raw security.capability value, base64. */
  value: string;
}

export interface OwnerEntry {
  path: string;
  uid: number;
  gid: number;
}

export interface DeviceEntry {
  path: string;
  type: 'char' | 'block' | 'fifo';
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
}

export const OWNERSHIP_FILE = 'ownership.json';
