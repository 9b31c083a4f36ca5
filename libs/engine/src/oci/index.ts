// Public surface of the oci domain: list exports by name.
export {
  ImageReference,
  parseImageReference,
  DEFAULT_REGISTRY,
  DEFAULT_TAG,
  MAX_IMAGE_NAME_LENGTH,
} from './image-reference.js';
