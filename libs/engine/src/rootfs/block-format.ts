/**
 * The block image's format name and file names (image-block.ts). The format names what
 * the file holds: an uncompressed erofs (4 KiB blocks) of the unpacked tree, whichever
 * builder wrote it (mkfs.erofs from the tree, or erofs-writer.ts during the unpack).
 */
export const BLOCK_IMAGE_FORMAT = 'erofs-1';
/** The guest's filesystem type for the block image. */
export const BLOCK_IMAGE_FSTYPE = 'erofs';
export const BLOCK_DIR = `block-${BLOCK_IMAGE_FORMAT}`;
export const BLOCK_FILE = 'rootfs.erofs';
