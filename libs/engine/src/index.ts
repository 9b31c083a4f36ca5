// The public API of @monocore/engine. Apps import only from here (package.json
// "exports" blocks deep imports); each domain lists its own exports by name.
export { VERSION } from './version.js';
export * from './errors/index.js';
export * from './home/index.js';
export * from './config/index.js';
export * from './plan/index.js';
export * from './oci/index.js';
export * from './rootfs/index.js';
export * from './vm/index.js';
export * from './state/index.js';
export * from './orchestration/index.js';
export * from './observability/index.js';
export * from './relay/index.js';
export * from './sandbox/index.js';
