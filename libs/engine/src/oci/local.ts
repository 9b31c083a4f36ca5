// The part of the oci domain that needs no network and no unpacker: finding
// images already here. `monocore run` of a local image loads only this (the
// registry client and the unpacker are imported when a pull is needed).
export { ImageReference, parseImageReference } from './image-reference.js';
export { hostPlatform, formatPlatform } from './platform.js';
export { ImageStore } from './image-store.js';
export type { ImageRecord } from './image-store.js';
export type { PulledImage } from './pull-image.js';
export { imageProcess } from './image-process.js';
export type { ProcessOverrides, ImageProcess } from './image-process.js';
export { commitTrusted as imageRootfsTrusted } from '../rootfs/commit-marker.js';
