// Child process for cross-process tests: pulls one image into a given home and
// prints the result as JSON. Usage: node pull-child.js HOME REFERENCE
import { MonocoreHome, closeDefaultRegistryClient, pullImage } from '@monocore/engine';

const [home, reference] = process.argv.slice(2);
if (!home || !reference) {
  console.error('usage: pull-child.js HOME REFERENCE');
  process.exit(2);
}
try {
  const pulled = await pullImage(reference, { home: new MonocoreHome(home) });
  process.stdout.write(`${JSON.stringify(pulled)}\n`);
} catch (err) {
  console.error(String(err));
  process.exitCode = 1;
} finally {
  await closeDefaultRegistryClient();
}
