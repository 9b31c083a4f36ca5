// Child for host-lock.test.ts (not a test itself): takes a HostLock, says so, and
// holds it until killed.
import { HostLock } from '@monocore/engine';

const lock = await HostLock.acquire(process.argv[2] as string, { timeoutMs: 10_000 });
console.log('locked');
setInterval(() => void lock, 60_000);
