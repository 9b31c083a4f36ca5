// Public surface of the oci domain: list exports by name.
export {
  ImageReference,
  parseImageReference,
  DEFAULT_REGISTRY,
  DEFAULT_TAG,
  MAX_IMAGE_NAME_LENGTH,
} from './image-reference.js';
export { MediaTypes, MANIFEST_ACCEPT, LAYER_TYPES } from './media-types.js';
export { isDigest, sha256Digest, digestHex } from './digest.js';
export { parseManifest, parseImageConfig } from './manifest.js';
export { runtimeConfig, type RuntimeConfig } from './runtime-config.js';
export { imageProcess } from './image-process.js';
export type { ProcessOverrides, ImageProcess } from './image-process.js';
export type { Descriptor, ImageManifest, ImageIndex, ImageConfig, ParsedManifest } from './manifest.js';
export { hostPlatform, parsePlatform, formatPlatform, platformMatches, selectPlatform } from './platform.js';
export type { Platform } from './platform.js';
export type { ContentStore, IngestWriter, BlobInfo, EnsureBlobOptions } from './content-store.js';
export { LocalContentStore } from './local-content-store.js';
export { RegistryClient, parseWwwAuthenticate, isLoopbackHost } from './registry-client.js';
export type { RegistryClientOptions, RepositoryRef, ManifestResponse, ManifestHead, BlobFetchOptions } from './registry-client.js';
export { defaultCredentialsResolver, dockerConfigCredentials, envCredentials, normalizeRegistryHost } from './registry-credentials.js';
export type { RegistryCredentials, CredentialsResolver } from './registry-credentials.js';
export { loadRegistriesFile } from './registries-config.js';
export { RegistryPolicy, RegistryPolicyDataSchema, classifyAddress, registryConnectHost } from './registry-policy.js';
export type { RegistryPolicyData, AddressClass } from './registry-policy.js';
export { ImageStore } from './image-store.js';
export { checkImageRecord } from './image-record.js';
export type { ImageRecord, PruneResult, PruneOptions } from './image-store.js';
export { pullImage, resolvePlatform, defaultRegistryClient, closeDefaultRegistryClient } from './pull-image.js';
export type { PullImageOptions, PulledImage, PullProgress } from './pull-image.js';
export { importImage } from './import-image.js';
export type { ImportImageOptions } from './import-image.js';
