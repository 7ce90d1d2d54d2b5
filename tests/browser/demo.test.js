// The welcome page and the todo demo in headless Chromium, through the real proxy with the Rust, Python,
// Node and Go example backends behind it: over HTTP, then over HTTPS with `modproxy cert local`'s certificate
// and its CA trusted as a developer's browser trusts it (an NSS database in the HOME Chromium runs with;
// no flag that skips the check). Needs `cargo build --workspace`, the Go example built into
// target/debug/go-backend, the Python SDK in .venv/ and the Node addon in sdk-node/ (make test-browser
// builds them all), Debian's chromium at /usr/bin/chromium and
// certutil (libnss3-tools).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';

import { DESCRIBED, LANGUAGES, startHttpsStack, startStack } from './stack.js';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
// The machine may have no internet: without the background-networking flags Chromium keeps trying
// (and failing) to reach Google's services.
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
const NAMES = { rust: 'Rust', python: 'Python', node: 'Node', go: 'Go' };
// Screenshots are always taken (rendering must not fail) but kept only where MODPROXY_SCREENSHOTS names
// a directory, e.g. `MODPROXY_SCREENSHOTS=/tmp npm test`, to look at the page by eye.
const SCREENSHOTS = process.env.MODPROXY_SCREENSHOTS;

/**
 * A HOME whose NSS database (where Chromium on Linux looks for the certificates its user trusts) holds
 * `caFile` as a trusted authority, as `modproxy cert local` leaves a developer's.
 */
function homeTrusting(caFile) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'modproxy-home-'));
  const db = `sql:${path.join(home, '.pki', 'nssdb')}`;
  fs.mkdirSync(path.join(home, '.pki', 'nssdb'), { recursive: true });
  execFileSync('certutil', ['-N', '-d', db, '--empty-password']);
  execFileSync('certutil', ['-A', '-d', db, '-t', 'C,,', '-n', 'modproxy local development CA', '-i', caFile]);
  return home;
}

demoInBrowser('the demo page in a browser', { start: startStack, shots: '' });
demoInBrowser('the demo page in a browser over HTTPS', { start: startHttpsStack, shots: 'https-' });

/** The page's tests through the stack `start` makes; screenshots are named with `shots` in front. */
function demoInBrowser(title, { start, shots }) {
  describe(title, () => {
    let stack;
    let profile;
    let home;
    let context;
    let page;
    const pageErrors = [];
    /** The status of each `/<module>/_client.js` the page loaded, by module. */
    const clientScripts = {};

    before(async () => {
      assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: \`apt-get install chromium\` (make test-browser does)`);
      stack = await start();
      // A fresh profile per run; Playwright wants it as the persistent context's directory, not in `args`.
      profile = fs.mkdtempSync(path.join(os.tmpdir(), 'modproxy-chromium-'));
      home = stack.caFile ? homeTrusting(stack.caFile) : undefined;
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        viewport: { width: 1280, height: 900 },
        ...(home ? { env: { ...process.env, HOME: home } } : {}),
      });
      page = context.pages()[0] ?? (await context.newPage());
      page.setDefaultTimeout(10_000);
      page.on('pageerror', (error) => pageErrors.push(error.message));
      page.on('response', (response) => {
        const loaded = new URL(response.url()).pathname.match(/^\/([^/]+)\/_client\.js$/);
        if (loaded) clientScripts[loaded[1]] = response.status();
      });
    });

    after(async () => {
      await context?.close();
      await stack?.stop();
      if (profile) fs.rmSync(profile, { recursive: true, force: true });
      if (home) fs.rmSync(home, { recursive: true, force: true });
    });

    /** Takes a full-page screenshot named `name`.png, kept only when MODPROXY_SCREENSHOTS is set. */
    async function screenshot(name) {
      const file = path.join(SCREENSHOTS ?? profile, `${shots}${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      if (SCREENSHOTS) console.log(`# screenshot: ${file}`);
    }

    /** The card of one language, once its first `list` has rendered. */
    async function card(lang) {
      const root = page.locator(`.card[data-lang="${lang}"]`);
      await root.locator('[data-role="list"] > li').first().waitFor();
      return root;
    }

    test('the welcome page links to the demo', async () => {
      const response = await page.goto(`${stack.url}/`);
      assert.equal(response.status(), 200);
      if (stack.caFile) {
        const security = await response.securityDetails();
        assert.match(security.issuer, /modproxy local development CA/);
        assert.equal(security.subjectName, 'localhost');
      }
      assert.equal(await page.locator('h1').textContent(), 'Module Proxy is running');
      await screenshot('welcome');
      const link = page.locator('a[href="/module_proxy_inner_mod/demo.html"]');
      assert.match(await link.textContent(), /demo/i);
      await Promise.all([page.waitForURL('**/module_proxy_inner_mod/demo.html'), link.click()]);
      assert.equal(await page.locator('h1').textContent(), 'One todo list, three languages');
    });

    test('every card shows its backend up and an empty list', async () => {
      for (const lang of LANGUAGES) {
        const root = await card(lang);
        assert.equal(await root.locator('h2[data-role="name"]').textContent(), NAMES[lang]);
        await root.locator('[data-role="ping"][data-state="up"]').waitFor();
        assert.equal(await root.locator('[data-role="ping"]').textContent(), 'backend up');
        assert.equal(await root.locator('[data-role="empty"]').count(), 1);
        assert.equal(await root.locator('[data-role="error"]').isHidden(), true);
      }
    });

    test('each SDK card calls its backend through the client the proxy generates from its contract', async () => {
      for (const lang of DESCRIBED) {
        const root = await card(lang);
        assert.equal(clientScripts[`todo-${lang}`], 200, `GET /todo-${lang}/_client.js`);
        assert.equal(await root.getAttribute('data-client'), 'generated');
        assert.equal(await root.locator('[data-role="via"]').textContent(), `todo-${lang}/_client.js`);
      }
      // The Go backend has no contract: its card posts envelopes itself.
      const go = await card('go');
      assert.equal(clientScripts['todo-go'], 404, 'GET /todo-go/_client.js');
      assert.equal(await go.getAttribute('data-client'), 'fetch');
      const source = await page.evaluate(async () => (await fetch('/todo-python/_client.js')).text());
      assert.match(source, /^export async function add\(data\) \{$/m);
      assert.match(source, /@typedef \{\{ title: string \}\} AddData/);
    });

    test('in each card, a todo is added and then completed', async () => {
      for (const lang of LANGUAGES) {
        const root = await card(lang);
        const title = `Write the ${NAMES[lang]} docs`;
        await root.locator('input[name="title"]').fill(title);
        await root.getByRole('button', { name: 'Add' }).click();

        const item = root.locator('li[data-id]', { hasText: title });
        await item.waitFor();
        assert.equal(await item.getAttribute('data-done'), 'false');
        assert.equal(await item.locator('.title').textContent(), title);
        assert.equal(await root.locator('input[name="title"]').inputValue(), '', 'the form is cleared');
        assert.equal(await root.locator('[data-role="count"]').textContent(), '0 of 1 done');

        await item.locator('input[type="checkbox"]').check();
        await root.locator('li[data-done="true"]', { hasText: title }).waitFor();
        assert.equal(await item.locator('input[type="checkbox"]').isChecked(), true);
        assert.equal(await item.locator('input[type="checkbox"]').isDisabled(), true, 'no undo: the backends have none');
        assert.equal(await root.locator('[data-role="count"]').textContent(), '1 of 1 done');
        assert.match(await root.locator('[data-role="last-call"]').textContent(), /"method":"list"/);
      }
      // What the page shows is what each backend holds, and each backend holds only its own todo.
      for (const lang of LANGUAGES) {
        const reply = await page.evaluate(async (module) => {
          const response = await fetch(`/${module}/`, { method: 'POST', body: '{"head":{"method":"list"}}' });
          return response.json();
        }, `todo-${lang}`);
        assert.deepEqual(reply, { todos: [{ id: 1, title: `Write the ${NAMES[lang]} docs`, done: true }] });
      }
    });

    test('an empty title shows the backend\'s validation error, and the next add clears it', async () => {
      for (const lang of LANGUAGES) {
        const root = await card(lang);
        await root.locator('input[name="title"]').fill('   ');
        await root.getByRole('button', { name: 'Add' }).click();
        const error = root.locator('[data-role="error"][data-kind="reply"][data-code="invalid"]');
        await error.waitFor();
        assert.match(await error.textContent(), /^invalid:\s*the title is empty/);
        assert.equal(await root.locator('li[data-id]').count(), 1, 'nothing was added');
        if (lang === 'node') await screenshot('demo-invalid');

        await root.locator('input[name="title"]').fill('Second');
        await root.getByRole('button', { name: 'Add' }).click();
        await root.locator('li[data-id]', { hasText: 'Second' }).waitFor();
        assert.equal(await root.locator('[data-role="error"]').isHidden(), true);
      }
    });

    test('a stopped backend shows as down, with the proxy\'s 502, in its own card only', async () => {
      await screenshot('demo-with-todos');

      await stack.stopBackend('node');
      const root = await card('node');
      await root.locator('input[name="title"]').fill('Unreachable');
      await root.getByRole('button', { name: 'Add' }).click();
      const error = root.locator('[data-role="error"][data-kind="transport"]');
      await error.waitFor();
      assert.match(await error.textContent(), /^Backend down —\s*502: /);
      await root.locator('[data-role="ping"][data-state="down"]').waitFor();
      assert.equal(await root.locator('input[name="title"]').inputValue(), 'Unreachable', 'the title is kept to retry');
      for (const lang of ['rust', 'python', 'go']) {
        const other = await card(lang);
        assert.equal(await other.locator('[data-role="ping"]').getAttribute('data-state'), 'up');
      }

      await screenshot('demo-node-down');
      assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
    });
  });
}
