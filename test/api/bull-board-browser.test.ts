// Bull Board as a person sees it: a real `monocore serve` (token set, embedded Redis,
// real worker booting a QEMU/TCG VM from the loopback registry) gets a real `POST /up`;
// then headless Chromium (Debian's package, driven by playwright-core: no browser is
// ever downloaded) opens /admin/queues. Without credentials the page is refused (401);
// with the token as Basic credentials (what a browser prompts for) it lists monocore's
// queues, and the host queue shows the completed start job of the service. The page is
// saved as a PNG under .monocore-test/artifacts/ (path printed as a test diagnostic).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot, tempDir, testEnvWithKernel, waitFor } from '../support/env.js';

const CLI = join(repoRoot, 'apps', 'cli', 'dist', 'main.js');
const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'bull-board-browser-token-0123456789';
const HOST_ID = 'board-host';
const env = testEnvWithKernel();
let home: string;
let serve: ChildProcess;
let serveErr = '';
let apiUrl = '';
let exited: Promise<number | null>;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: bash scripts/install-deps.sh installs Debian's chromium package`);
  home = tempDir('bull-board-');
  const serveEnv: NodeJS.ProcessEnv = { ...process.env, MONOCORE_HOME: home, MONOCORE_KERNEL_DIR: env.kernelDir, MONOCORE_API_TOKEN: TOKEN };
  delete serveEnv.MONOCORE_REDIS_URL;
  serve = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--host-id', HOST_ID], { env: serveEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  exited = new Promise((resolve) => serve.once('exit', (code) => resolve(code)));
  serve.stderr!.on('data', (d: Buffer) => (serveErr += d.toString()));
  apiUrl = await waitFor(
    () => {
      if (serve.exitCode !== null) throw new Error(`serve exited with ${serve.exitCode}:\n${serveErr}`);
      return /API listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(serveErr)?.[1];
    },
    { what: 'monocore serve to listen', timeoutMs: 120_000, intervalMs: 100 },
  );
});

after(async () => {
  if (serve && serve.exitCode === null) {
    serve.kill('SIGTERM');
    await exited;
  }
  const pidFile = join(home, 'redis', 'redis.pid');
  if (existsSync(pidFile)) {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(home, { recursive: true, force: true });
});

/** Chromium from Debian, headless, with nothing that reaches for the network by itself; a fresh profile. */
async function launch(profile: string, credentials?: { username: string; password: string }): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
    ...(credentials ? { httpCredentials: credentials } : {}),
  });
}

test('Bull Board in headless Chromium: refused without credentials, with them lists monocore\'s queues and the real jobs of an up', async (t) => {
  // A real deployment through the REST API: one service, one VM.
  const res = await fetch(`${apiUrl}/up?wait=true&timeout=300`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ service: [{ name: 'board-demo', base: env.image, ram: 192, command: '/bin/sh', args: ['-c', 'echo on the board; exec sleep 600'] }] }),
  });
  const up = (await res.json()) as { ok: boolean; deploymentId: string; services: Array<{ name: string; status: string }> };
  assert.equal(res.status, 200, JSON.stringify(up));
  assert.equal(up.ok, true, JSON.stringify(up));

  const artifacts = join(repoRoot, '.monocore-test', 'artifacts');
  mkdirSync(artifacts, { recursive: true });

  // Without credentials, or with a wrong token: the browser is refused and shows nothing of the board
  // (Chromium reports a Basic challenge it could not answer as ERR_INVALID_AUTH_CREDENTIALS).
  for (const credentials of [undefined, { username: 'admin', password: 'not-the-token-0123456789' }]) {
    const anonProfile = tempDir('chromium-anon-');
    const anon = await launch(anonProfile, credentials);
    try {
      const page = anon.pages()[0] ?? (await anon.newPage());
      const refused = await page.goto(`${apiUrl}/admin/queues`).then(
        (r) => `HTTP ${r?.status()}`,
        (err: Error) => err.message,
      );
      assert.match(refused, /HTTP 401|net::ERR_INVALID_AUTH_CREDENTIALS/, `${credentials ? 'a wrong token' : 'no credentials'}: ${refused}`);
      // Nor does the board's own data API answer this browser.
      const data = await anon.request.get(`${apiUrl}/admin/queues/api/queues`);
      assert.equal(data.status(), 401);
      assert.doesNotMatch(await data.text(), /host-board-host/);
    } finally {
      await anon.close();
      rmSync(anonProfile, { recursive: true, force: true });
    }
  }

  // With the token as Basic credentials, as a person types them into the browser's prompt.
  const profile = tempDir('chromium-');
  const context = await launch(profile, { username: 'admin', password: TOKEN });
  let page: Page | undefined;
  try {
    page = context.pages()[0] ?? (await context.newPage());
    const overview = await page.goto(`${apiUrl}/admin/queues`);
    assert.equal(overview?.status(), 200);
    // The board is a single-page app: the sidebar lists the queues first, their cards (with job
    // counts: the root of the up, the pull, the start) render once its own API answered.
    const cardsShown = [`host-${HOST_ID}\\s+1 Job\\b`, `pull-${HOST_ID}\\s+1 Job\\b`, 'deploy\\s+[1-9]\\d* Jobs?\\b', 'gate\\s+\\d+ Jobs?\\b'];
    await page
      .waitForFunction(
        // Runs in the page (serialised: nothing from this file's scope); compiled without the DOM's types.
        (patterns) => patterns.every((p) => new RegExp(p).test((globalThis as unknown as { document: { body: { innerText: string } } }).document.body.innerText)),
        cardsShown,
        { timeout: 60_000 },
      )
      .catch(async (err: Error) => assert.fail(`the queue cards never showed: ${err.message}\n${await page!.locator('body').innerText()}`));
    assert.match(await page.title(), /monocore/i);
    const overviewPng = join(artifacts, 'bull-board-overview.png');
    await page.screenshot({ path: overviewPng, fullPage: true });
    t.diagnostic(`Bull Board overview screenshot: ${overviewPng}`);

    // The host queue's completed jobs: the start job of the service, with its data.
    await page.goto(`${apiUrl}/admin/queues/queue/${encodeURIComponent(`host-${HOST_ID}`)}?status=completed`);
    await page.getByText('board-demo').first().waitFor({ timeout: 60_000 });
    const text = await page.locator('body').innerText();
    assert.match(text, new RegExp(`${up.deploymentId}\\.start\\.board-demo`), `the start job of this deployment: ${text}`);
    assert.match(text, /service:\s*"board-demo"/, 'its data names the service');
    assert.match(text, /action:\s*"started"/, 'its result: the VM started');
    const jobsPng = join(artifacts, 'bull-board-host-queue.png');
    await page.screenshot({ path: jobsPng, fullPage: true });
    t.diagnostic(`Bull Board host queue screenshot: ${jobsPng}`);
    // A PNG with something in it, not an empty file.
    const png = readFileSync(jobsPng);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.ok(png.length > 10_000, `screenshot is ${png.length} bytes`);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
