/** The monocore release this build belongs to (kept in step with package.json). */
export const VERSION = '0.3.0';
