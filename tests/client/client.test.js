// `modproxy client` output checked by the real TypeScript compiler: clients generated (TS and JS) from
// the fixture contract that proxy/tests uses, served by a stand-in backend that answers `_describe`, and
// from the real example backends (Rust, Python, Node), each started here on a free port and asked for
// its `_describe` directly. Needs `cargo build -p modproxy -p rust-backend`, the Python SDK in .venv/
// and the Node SDK's addon in sdk-node/ (`make python-sdk node-sdk`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const TARGET = path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, 'target'), 'debug');
const MODPROXY = process.env.MODPROXY_BIN ?? path.join(TARGET, 'modproxy');
const DOCUMENT = fs.readFileSync(path.join(REPO, 'proxy/tests/fixtures/contract/todo.json'));
const GENERATED = path.join(HERE, 'generated');
const TSC = path.join(HERE, 'node_modules/typescript/bin/tsc');

/** The example backends: how each starts on an address, and the module its client is generated for. */
const EXAMPLES = {
  rust: { module: 'todo-rust', command: (addr) => [path.join(TARGET, 'rust-backend'), addr] },
  python: {
    module: 'todo-python',
    command: (addr) => [path.join(REPO, '.venv/bin/python'), path.join(REPO, 'examples/python-backend/app.py'), addr],
  },
  node: { module: 'todo-node', command: (addr) => [process.execPath, path.join(REPO, 'examples/node-backend/index.js'), addr] },
};

/** How long an example backend gets to accept connections, and to exit once asked to. */
const START_MS = 30_000;
const STOP_MS = 5_000;

let server;
/** Every backend process started, as soon as it is spawned, so that `after` ends it whatever failed. */
const backends = [];

// Belt and braces: should this process end without `after` running, the backends end with it.
process.on('exit', () => {
  for (const { child } of backends) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Answers every frame with the fixture document, as a backend answers `_describe`. */
function standIn() {
  return net.createServer((socket) => {
    socket.once('data', () => {
      const document = Buffer.from(JSON.stringify(JSON.parse(DOCUMENT)));
      socket.end(Buffer.concat([Buffer.from(`${String(document.length).padStart(10)}\r\n`), document]));
    });
  });
}

/** A port nobody listens on now: the OS picks it, and it is released for the backend to take. */
async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

function connects(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts an example backend on a free port; resolves to its address once it accepts connections. */
async function startExample(lang) {
  const port = await freePort();
  const addr = `127.0.0.1:${port}`;
  const [command, ...args] = EXAMPLES[lang].command(addr);
  const child = spawn(command, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  const backend = { lang, child, output: '', exited: once(child, 'exit').catch(() => {}) };
  backends.push(backend);
  const keep = (chunk) => {
    backend.output = (backend.output + chunk).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let spawnError;
  child.once('error', (error) => {
    spawnError = error;
  });
  const deadline = Date.now() + START_MS;
  while (!(await connects(port))) {
    if (spawnError) throw new Error(`${lang} example: ${command}: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${lang} example exited (${child.exitCode ?? child.signalCode}) before accepting on ${addr}:\n${backend.output}`);
    }
    if (Date.now() > deadline) throw new Error(`${lang} example: nothing accepts on ${addr} after ${START_MS} ms:\n${backend.output}`);
    await sleep(50);
  }
  return addr;
}

/** Ends a backend: SIGTERM, then SIGKILL if it has not exited within STOP_MS. */
async function stop({ child, exited }) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
  await exited;
  clearTimeout(timer);
}

const generate = (module, lang, from, file) =>
  promisify(execFile)(MODPROXY, ['client', '--module', module, '--lang', lang, '--from', from, '--out', path.join(GENERATED, file)]);

before(async () => {
  fs.rmSync(GENERATED, { recursive: true, force: true });
  fs.mkdirSync(GENERATED);
  server = standIn();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fixture = `127.0.0.1:${server.address().port}`;
  // Asynchronous: the stand-in backend answers on this process's event loop.
  await generate('todo', 'ts', fixture, 'todo.ts');
  await generate('todo', 'js', fixture, 'todo_js.js');
  // The examples start side by side; every one that started is stopped in `after`, even if another failed.
  const started = await Promise.allSettled(Object.keys(EXAMPLES).map(startExample));
  const failed = started.filter(({ status }) => status === 'rejected').map(({ reason }) => reason.message);
  if (failed.length > 0) throw new Error(failed.join('\n'));
  await Promise.all(
    Object.entries(EXAMPLES).flatMap(([lang, { module }], i) => [
      generate(module, 'ts', started[i].value, `todo_${lang}.ts`),
      generate(module, 'js', started[i].value, `todo_${lang}_js.js`),
    ]),
  );
});

after(async () => {
  server?.close();
  await Promise.all(backends.map(stop));
});

/** Every .ts file here, right uses and misuses, in one tsc program (which takes in the clients they import). */
const SOURCES = fs.readdirSync(HERE).filter((file) => file.endsWith('.ts')).sort();
/** The files each test looks at for errors: none in right uses and the clients they import. */
const FIXTURE_USES = ['use.ts', 'use_js.ts', 'generated/todo.ts', 'generated/todo_js.js'];
const exampleUses = (lang) => [`use_${lang}.ts`, `generated/todo_${lang}.ts`, `generated/todo_${lang}_js.js`];
const ERROR = /^(\S+)\((\d+),\d+\): error (TS\d+): (.*)$/;
let compiled;

/**
 * tsc --strict over SOURCES, once for every test (one program takes seconds; the files are modules, so
 * one file's errors do not touch another's). Its errors in tsc's order, each `{ file, line, text }`:
 * `line` is `FILE:LINE: TSnnnn message`, the first line of the error, and `text` all of it. Anything else
 * tsc says fails every test rather than let one pass vacuously.
 */
function tscErrors() {
  compiled ??= (() => {
    const args = [TSC, '--noEmit', '--strict', '--pretty', 'false', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', '--lib', 'es2022,dom', '--allowJs', '--checkJs', ...SOURCES];
    const run = spawnSync(process.execPath, args, { cwd: HERE, encoding: 'utf8' });
    const errors = [];
    for (const line of run.stdout.split('\n')) {
      const match = ERROR.exec(line);
      if (match) {
        const [, file, at, code, message] = match;
        errors.push({ file, line: `${file}:${at}: ${code} ${message}`, text: line });
      } else if (line && /^\s/.test(line) && errors.length > 0) {
        errors.at(-1).text += `\n${line}`;
      } else if (line) {
        return new Error(`tsc said more than errors (status ${run.status}):\n${run.stdout}${run.stderr}`);
      }
    }
    if (run.error || run.stderr || ![0, 1, 2].includes(run.status)) {
      return new Error(`tsc failed (status ${run.status}): ${run.error ?? ''}\n${run.stdout}${run.stderr}`);
    }
    return errors;
  })();
  if (compiled instanceof Error) throw compiled;
  return compiled;
}

/** Asserts that tsc's errors in `files` are exactly `expected` (first lines), saying all of them if not. */
function assertErrors(files, expected) {
  const errors = tscErrors().filter(({ file }) => files.includes(file));
  const actual = errors.map(({ line }) => line);
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    const list = (lines) => (lines.length > 0 ? lines.map((line) => `  ${line}`).join('\n') : '  (none)');
    const said = errors.map(({ text }) => text).join('\n') || '(nothing)';
    assert.fail(`tsc's errors in ${files.join(', ')}:\n${list(actual)}\nexpected:\n${list(expected)}\ntsc said:\n${said}`);
  }
}

test('right uses of the TS and JS clients compile under --strict', () => {
  assertErrors(FIXTURE_USES, []);
});

test('a wrong argument type does not compile', () => {
  assertErrors(['misuse.ts'], ["misuse.ts:5: TS2322 Type 'string' is not assignable to type 'number'."]);
});

for (const lang of Object.keys(EXAMPLES)) {
  test(`${lang} example: right uses of its TS and JS clients compile under --strict`, () => {
    assertErrors(exampleUses(lang), []);
  });

  // misuse_<lang>.ts: the same four lines for every example, a wrong title type and a field no Todo has,
  // through the TS client (lines 6, 7) and the JS one (lines 8, 9); nothing else may fail.
  test(`${lang} example: a wrong title type and a field no Todo has do not compile`, () => {
    const file = `misuse_${lang}.ts`;
    assertErrors(
      [file],
      [
        `${file}:6: TS2322 Type 'number' is not assignable to type 'string'.`,
        `${file}:7: TS2339 Property 'due' does not exist on type 'AddResult'.`,
        `${file}:8: TS2322 Type 'number' is not assignable to type 'string'.`,
        `${file}:9: TS2339 Property 'due' does not exist on type 'AddResult'.`,
      ],
    );
  });
}

test('tsc has no errors in files the tests above do not look at', () => {
  const looked = [...FIXTURE_USES, 'misuse.ts', ...Object.keys(EXAMPLES).flatMap((lang) => [...exampleUses(lang), `misuse_${lang}.ts`])];
  assertErrors([...new Set(tscErrors().map(({ file }) => file))].filter((file) => !looked.includes(file)), []);
});
