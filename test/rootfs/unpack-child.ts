// Child process for cross-process rootfs tests (not a test file itself):
//   node unpack-child.js '<json {action: ensure|remove|block, home, imageId, layers}>'
// Prints one JSON line per progress event ({"progress":…}) and a final
// {"result":…} or {"error":…} line.
import { ensureImageBlock, ensureImageRootfs, removeImageRootfs, MonocoreHome, type ImageLayerInput } from '@monocore/engine';

interface Args {
  action: 'ensure' | 'remove' | 'block';
  home: string;
  imageId: string;
  layers: ImageLayerInput[];
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const home = new MonocoreHome(args.home);
try {
  if (args.action === 'block') {
    const r = await ensureImageBlock({ home, imageId: args.imageId, onLockWait: (holder) => console.log(JSON.stringify({ waiting: holder })) });
    console.log(JSON.stringify({ result: r }));
  } else if (args.action === 'remove') {
    const removed = await removeImageRootfs(home, args.imageId);
    console.log(JSON.stringify({ result: { removed } }));
  } else {
    let progressEvents = 0;
    const r = await ensureImageRootfs({
      home,
      imageId: args.imageId,
      layers: args.layers,
      onLockWait: (holder) => console.log(JSON.stringify({ waiting: holder })),
      onProgress: (e) => {
        progressEvents++;
        console.log(JSON.stringify({ progress: e }));
      },
    });
    console.log(JSON.stringify({ result: { ...r, progressEvents } }));
  }
} catch (err) {
  const e = err as { code?: string; message: string };
  console.log(JSON.stringify({ error: { code: e.code, message: e.message } }));
  process.exitCode = 1;
}
