// `monocore image import` of umoci-built OCI layouts and oci-archive tarballs,
// and the image commands (pull, ls, inspect, rm, prune) run as real CLI processes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { cp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ImageStore, LocalContentStore, importImage, isMonocoreError } from '@monocore/engine';
import { buildImage, buildIndex, layoutEntry, pushImage, readBlob, run, scratch, uniqueRepo } from './support/oci-fixtures.js';
import { ociTestEnv, tempHome } from './support/oci-env.js';

const exec = promisify(execFile);
const { registry } = ociTestEnv();
const cli = fileURLToPath(new URL('../../../apps/cli/dist/main.js', import.meta.url));
const work = await scratch();
const layout = join(work.dir, 'app');

before(async () => {
  await buildImage(layout, 'latest', { layers: [{ 'etc/imported': 'from a layout\n' }, { 'usr/share/x': 'x\n' }], entrypoint: ['/bin/app'], env: ['K=V'] });
  await buildImage(layout, 'arm', { layers: [{ 'etc/imported': 'arm\n' }], arch: 'arm64' });
  await buildIndex(layout, 'multi', [
    { tag: 'latest', os: 'linux', architecture: 'amd64' },
    { tag: 'arm', os: 'linux', architecture: 'arm64' },
  ]);
});

after(() => work.cleanup());

async function mc(home: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [cli, ...args], { env: { ...process.env, MONOCORE_HOME: home } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('image import', () => {
  test('an OCI layout directory: one image per tag, named localhost/<dir>:<tag>, index resolved for the host', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const imported = await importImage(layout, { home, tag: 'latest' });
      assert.equal(imported.length, 1);
      const [img] = imported;
      assert.equal(img!.reference, 'localhost/app:latest');
      assert.equal(img!.manifestDigest, (await layoutEntry(layout, 'latest')).digest);
      assert.equal(await readFile(join(img!.rootfs, 'etc/imported'), 'utf8'), 'from a layout\n');
      assert.deepEqual(img!.config.entrypoint, ['/bin/app']);
      const viaIndex = await importImage(layout, { home, tag: 'multi', reference: 'example.com/app:multi' });
      assert.equal(viaIndex[0]!.reference, 'example.com/app:multi');
      assert.equal(viaIndex[0]!.manifestDigest, img!.manifestDigest, 'the index entry for linux/amd64');
      const [rec] = await new ImageStore(home).require('example.com/app:multi');
      assert.equal(rec!.source, 'import');
    } finally {
      await cleanup();
    }
  });

  test('an oci-archive tarball (skopeo copy … oci-archive:)', async () => {
    const { home, cleanup } = await tempHome();
    try {
      const archive = join(work.dir, 'app.tar');
      await run('skopeo', ['copy', '--quiet', `oci:${layout}:latest`, `oci-archive:${archive}:latest`]);
      const [img] = await importImage(archive, { home, reference: 'myapp:1' });
      assert.equal(img!.reference, 'docker.io/library/myapp:1');
      assert.equal(await readFile(join(img!.rootfs, 'usr/share/x'), 'utf8'), 'x\n');
      assert.deepEqual(await readdir(home.tmpDir), [], 'the scratch extraction is removed');
    } finally {
      await cleanup();
    }
  });

  test('a layout whose layer does not match its digest is refused and nothing is stored', async () => {
    const { home, cleanup } = await tempHome();
    const bad = join(work.dir, 'bad');
    try {
      await cp(layout, bad, { recursive: true });
      const manifest = JSON.parse(await readBlob(bad, (await layoutEntry(bad, 'latest')).digest)) as { layers: Array<{ digest: string }> };
      const victim = manifest.layers[0]!.digest;
      const file = join(bad, 'blobs', 'sha256', victim.slice(7));
      const bytes = await readFile(file);
      const mid = bytes.length >> 1;
      bytes[mid] = bytes[mid]! ^ 0xff;
      await writeFile(file, bytes);
      await assert.rejects(importImage(bad, { home, tag: 'latest' }), (err: unknown) => {
        assert.ok(isMonocoreError(err, 'MC_OCI_DIGEST_MISMATCH'), String(err));
        assert.equal(err.details.digest, victim);
        return true;
      });
      assert.equal(await new LocalContentStore(home).info(victim), undefined);
      assert.deepEqual(await new ImageStore(home).list(), []);
      await assert.rejects(importImage(work.dir, { home }), (err: unknown) => isMonocoreError(err, 'MC_OCI_INVALID_LAYOUT') && /oci-layout/.test(err.message));
      await assert.rejects(importImage(join(work.dir, 'missing'), { home }), (err: unknown) => isMonocoreError(err, 'MC_OCI_INVALID_LAYOUT'));
      await assert.rejects(importImage(layout, { home, tag: 'nope' }), (err: unknown) => isMonocoreError(err, 'MC_OCI_INVALID_LAYOUT') && /tags: /.test(err.message));
    } finally {
      await cleanup();
    }
  });
});

describe('monocore pull / image (CLI processes)', () => {
  test('pull --json, image ls/inspect --json, rm, prune', async () => {
    const { home, cleanup } = await tempHome();
    const repo = uniqueRepo('cli');
    try {
      await pushImage(layout, 'latest', `${registry}/${repo}:v1`);
      const ref = `${registry}/${repo}:v1`;
      const pull = await mc(home.root, ['pull', '--json', ref]);
      assert.equal(pull.code, 0, pull.stderr);
      const pulled = JSON.parse(pull.stdout) as { reference: string; manifestDigest: string; rootfs: string; platform: string };
      assert.equal(pulled.reference, ref);
      assert.match(pull.stderr, /downloading/, 'plain progress lines when stderr is not a TTY');
      const ls = JSON.parse((await mc(home.root, ['image', 'ls', '--json'])).stdout) as Array<{ reference: string }>;
      assert.deepEqual(ls.map((i) => i.reference), [ref]);
      const inspect = JSON.parse((await mc(home.root, ['image', 'inspect', '--json', ref])).stdout) as {
        digest: string;
        platform: string;
        layers: Array<{ digest: string; size: number; mediaType: string }>;
        config: { entrypoint: string[]; env: string[] };
        rootfs: string;
      };
      assert.equal(inspect.digest, pulled.manifestDigest);
      assert.equal(inspect.platform, 'linux/amd64');
      assert.equal(inspect.layers.length, 2);
      assert.deepEqual(inspect.config.entrypoint, ['/bin/app']);
      assert.equal(inspect.rootfs, pulled.rootfs);
      assert.equal(await readFile(join(inspect.rootfs, 'etc/imported'), 'utf8'), 'from a layout\n');
      // By digest prefix too.
      assert.equal((await mc(home.root, ['image', 'inspect', '--json', pulled.manifestDigest.slice(7, 19)])).code, 0);

      const usage = await mc(home.root, ['pull', '--platform', 'amd64', ref]);
      assert.equal(usage.code, 2, 'a malformed platform is a usage error');
      const missing = await mc(home.root, ['pull', '--json', `${registry}/${repo}:nope`]);
      assert.equal(missing.code, 1);
      assert.equal((JSON.parse(missing.stdout) as { error: { code: string } }).error.code, 'MC_OCI_MANIFEST_NOT_FOUND');
      assert.equal((await mc(home.root, ['image', 'inspect', 'nothing:here'])).code, 1);

      const imp = await mc(home.root, ['image', 'import', '--json', '--ref-name', 'latest', '--name', 'local/app:dev', layout]);
      assert.equal(imp.code, 0, imp.stderr);
      assert.equal((JSON.parse(imp.stdout) as Array<{ reference: string }>)[0]!.reference, 'docker.io/local/app:dev');

      // rm keeps blobs until prune; the layers shared with the import stay after pruning.
      assert.equal((await mc(home.root, ['image', 'rm', ref])).code, 0);
      assert.equal((await mc(home.root, ['image', 'inspect', ref])).code, 1);
      const prune = JSON.parse((await mc(home.root, ['image', 'prune', '--json'])).stdout) as { removedBlobs: string[]; removedRootfs: string[] };
      const store = new LocalContentStore(home);
      for (const l of inspect.layers) assert.ok(await store.info(l.digest), 'layers still used by local/app:dev are kept');
      assert.deepEqual(prune.removedRootfs, [], 'the shared rootfs is still referenced');
      assert.equal((await mc(home.root, ['image', 'rm', 'local/app:dev'])).code, 0);
      // A running VM names its image on its command line (QEMU: -add-fd …,opaque=<block image>,
      // the erofs beside the rootfs that `pull` built): prune keeps that image's dir, however
      // unreferenced, until the process is gone.
      const block = join(pulled.rootfs, '..', 'block-erofs-1', 'rootfs.erofs');
      await stat(block);
      const vm = spawn('sh', ['-c', 'sleep 60', 'qemu-system-x86_64', '-add-fd', `fd=3,set=1,opaque=${block}`], { stdio: 'ignore' });
      try {
        const busy = JSON.parse((await mc(home.root, ['image', 'prune', '--json'])).stdout) as { removedBlobs: string[]; removedRootfs: string[]; keptInUse: string[] };
        assert.ok(busy.removedBlobs.length >= 4, `manifest, config and layers removed: ${busy.removedBlobs.length}`);
        assert.deepEqual(busy.removedRootfs, []);
        assert.deepEqual(busy.keptInUse, [pulled.manifestDigest]);
        await stat(pulled.rootfs);
        const human = await mc(home.root, ['image', 'prune']);
        assert.match(human.stdout, /kept 1 rootfs dir\(s\) that running VMs use/);
      } finally {
        vm.kill('SIGKILL');
        await new Promise((r) => vm.once('exit', r));
      }
      const prune2 = JSON.parse((await mc(home.root, ['image', 'prune', '--json'])).stdout) as { removedBlobs: string[]; removedRootfs: string[] };
      assert.deepEqual(prune2.removedRootfs, [pulled.manifestDigest]);
      assert.deepEqual(await store.list(), []);
      await assert.rejects(stat(pulled.rootfs));
      await assert.rejects(stat(block), 'the block image went with it');
    } finally {
      await cleanup();
    }
  });
});
