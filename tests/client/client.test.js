// `modproxy client` output checked by the real TypeScript compiler: clients generated (TS and JS) from
// the fixture contract that proxy/tests uses, served by a stand-in backend that answers `_describe`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const MODPROXY =
  process.env.MODPROXY_BIN ??
  path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, 'target'), 'debug', 'modproxy');
const DOCUMENT = fs.readFileSync(path.join(REPO, 'proxy/tests/fixtures/contract/todo.json'));
const GENERATED = path.join(HERE, 'generated');
const TSC = path.join(HERE, 'node_modules/typescript/bin/tsc');

let server;

/** Answers every frame with the fixture document, as a backend answers `_describe`. */
function backend() {
  return net.createServer((socket) => {
    socket.once('data', () => {
      const document = Buffer.from(JSON.stringify(JSON.parse(DOCUMENT)));
      socket.end(Buffer.concat([Buffer.from(`${String(document.length).padStart(10)}\r\n`), document]));
    });
  });
}

before(async () => {
  server = backend();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const from = `127.0.0.1:${server.address().port}`;
  fs.rmSync(GENERATED, { recursive: true, force: true });
  fs.mkdirSync(GENERATED);
  for (const [lang, file] of [['ts', 'todo.ts'], ['js', 'todo_js.js']]) {
    // Asynchronous: the stand-in backend answers on this process's event loop.
    await promisify(execFile)(MODPROXY, ['client', '--module', 'todo', '--lang', lang, '--from', from, '--out', path.join(GENERATED, file)]);
  }
});

after(() => server.close());

function tsc(...files) {
  const args = [TSC, '--noEmit', '--strict', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', '--lib', 'es2022,dom', '--allowJs', '--checkJs', ...files];
  return spawnSync(process.execPath, args, { cwd: HERE, encoding: 'utf8' });
}

test('right uses of the TS and JS clients compile under --strict', () => {
  const run = tsc('use.ts', 'use_js.ts');
  assert.equal(run.status, 0, run.stdout + run.stderr);
});

test('a wrong argument type does not compile', () => {
  const run = tsc('misuse.ts');
  assert.notEqual(run.status, 0, 'tsc accepted misuse.ts');
  assert.match(run.stdout, /misuse\.ts\(5,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/, run.stdout);
});
