export { MonocoreError, isMonocoreError } from './monocore-error.js';
export { ErrorCodes, type ErrorCode } from './codes.js';
