// Public surface of the rootfs domain: list exports by name.
export {
  ensureImageRootfs,
  removeImageRootfs,
  imageRootfsPath,
  imageRootfsDir,
  readOwnershipRecord,
  removeTree,
  cleanupRootfsTemps,
  type ImageLayerInput,
  type UnpackProgress,
  type EnsureImageRootfsOptions,
  type ImageRootfs,
} from './image-rootfs.js';
export { imageRootfsIdsInUse } from './rootfs-in-use.js';
export {
  ensureImageBlock,
  imageBlockReady,
  buildBlockImage,
  blockImageToolAvailable,
  imageBlockPath,
  storeImageOf,
  BLOCK_IMAGE_FORMAT,
  BLOCK_IMAGE_FSTYPE,
  type ImageBlock,
  type EnsureImageBlockOptions,
  type BuildBlockImageOptions,
} from './image-block.js';
export { applyLayer, type ApplyLayerOptions, type ApplyLayerStats } from './apply-layer.js';
export { UnpackSession, canChown } from './unpack-session.js';
export { ErofsWriter, type ErofsStats, type ErofsFinishOptions } from './erofs-writer.js';
export { HostLock, type HostLockOptions } from './host-lock.js';
export { layerCompression, sniffCompression, SUPPORTED_LAYER_MEDIA_TYPES, type LayerCompression } from './layer-compression.js';
export { zstdCliAvailable } from './layer-source.js';
export { OWNERSHIP_FILE, type OwnershipRecordFile, type OwnerEntry, type DeviceEntry, type CapabilityEntry } from './ownership-record.js';
