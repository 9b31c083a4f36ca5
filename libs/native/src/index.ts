// Public surface of @monocore/native: list exports by name.
// krun-child.ts is deliberately not exported: it is a process entry point,
// started by path (see krunChildEntry) in a process that becomes the VM.
export { Libkrun, LIBKRUN_FUNCTIONS, LIBKRUN_REQUIRED_SYMBOLS, KRUN_LOG_LEVEL, KRUN_TSI_HIJACK_INET, KRUN_TSI_HIJACK_UNIX, KRUN_FS_ROOT_TAG, KRUN_EXIT_CODES } from './libkrun.js';
export type { LibkrunFunctionName } from './libkrun.js';
export { LibkrunError } from './libkrun-error.js';
export type { LibkrunErrorCode } from './libkrun-error.js';
export { probeLibkrun, findLibkrun, loadLibkrun, libkrunCandidates, LIBKRUN_PATH_ENV } from './libkrun-locator.js';
export type { LibkrunProbe } from './libkrun-locator.js';
export { describeErrno } from './errno-name.js';
export { KRUN_CHILD_SETUP_FAILED_EXIT, KRUN_CHILD_STATUS_FD } from './krun-child-config.js';
export type { KrunChildConfig, KrunChildMount, KrunChildStatus } from './krun-child-config.js';
export { krunChildEntry } from './krun-child-entry.js';
