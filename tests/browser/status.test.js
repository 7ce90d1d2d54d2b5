// The operator's status page in headless Chromium, through the real proxy in front of the Rust example
// backend: the numbers move when traffic comes, and a killed backend's node turns masked. A phone-width
// screenshot is kept in tests/browser/artifacts/status.png. Needs `cargo build --workspace` and Debian's
// chromium at /usr/bin/chromium.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';

import { startStack } from '../stack.cjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');

describe('the status page in a browser', () => {
  let stack;
  let profile;
  let context;
  let page;
  const pageErrors = [];
  const outside = [];

  before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: \`apt-get install chromium\` (make test-browser does)`);
    // A long fail_timeout, so that the killed node stays masked while the page is looked at.
    stack = await startStack({ modules: { rust: 'todo' }, settings: 'fail_timeout = 60' });
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'modproxy-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      // A phone's width: the page must be usable there.
      viewport: { width: 390, height: 844 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('request', (request) => {
      if (!request.url().startsWith(stack.url)) outside.push(request.url());
    });
  });

  after(async () => {
    await context?.close();
    await stack?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  /** A JSON-RPC call to the todo backend, as the demo page makes it. */
  function call(method, data) {
    return fetch(`${stack.url}/todo/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ head: { method }, data }),
    });
  }

  const card = () => page.locator('.card[data-module="todo"]');
  const stat = (name) => card().locator(`[data-stat="${name}"]`);

  test('shows traffic, then a killed node masked, at a phone width', async () => {
    const response = await page.goto(`${stack.url}/module_proxy_inner_mod/status`);
    assert.equal(response.status(), 200);
    await card().waitFor();
    assert.equal(await stat('rps').textContent(), '0.00', 'no traffic yet');
    assert.equal(await card().locator('.node [data-state]').getAttribute('data-state'), 'up');

    for (let i = 0; i < 30; i += 1) assert.equal((await call('list', {})).status, 200);
    // 30 requests over the last minute, shown once the seconds they fell in are complete.
    await page.waitForFunction(
      () => document.querySelector('.card[data-module="todo"] [data-stat="rps"]')?.textContent === '0.50',
      null,
      { timeout: 5_000 },
    );
    assert.match(await stat('p50').textContent(), /ms$/);
    const drawn = await card().locator('svg polyline').first().getAttribute('points');
    assert.ok(drawn.split(' ').some((point) => !point.endsWith(',38.0')), `the chart rose: ${drawn}`);

    await stack.stop('rust');
    assert.equal((await call('list', {})).status, 502);
    await card().locator('.node [data-state="masked"]').waitFor({ timeout: 5_000 });
    await page.waitForFunction(
      () => document.querySelector('.card[data-module="todo"] [data-stat="error_rate"]')?.textContent !== '0.0 %',
      null,
      { timeout: 5_000 },
    );

    // Nothing sideways: the page fits the phone's width.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'status.png'), fullPage: true });
    assert.deepEqual(outside, [], 'the page asked for nothing but the proxy');
    assert.deepEqual(pageErrors, []);
  });
});
