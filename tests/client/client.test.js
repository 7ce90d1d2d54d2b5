// `modproxy client` output checked by the real TypeScript compiler: clients generated (TS and JS) from
// the fixture contract that proxy/tests uses, served by a stand-in backend that answers `_describe`, and
// from the real example backends (Rust, Python, Node), each started here on a free port and asked for
// its `_describe` directly.
//
// The backend-to-backend clients too (issue 25): Python (`--lang py`) checked by mypy --strict and ruff,
// and run; Node (`--lang node`) by tsc --checkJs --strict, and run. They are generated from the fixture
// contract and from edge_contract.json (keys no identifier can hold, recursion, lines too long), and the
// stubs committed in examples/python-backend and examples/node-backend, through which each example's
// `stats` calls its peer, must be byte for byte what the running peer example generates now.
//
// Needs `cargo build -p modproxy -p rust-backend`, the Python SDK with mypy and ruff in .venv/ and the
// Node SDK's addon in sdk-node/ (`make python-sdk node-sdk`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const TARGET = path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, 'target'), 'debug');
const MODPROXY = process.env.MODPROXY_BIN ?? path.join(TARGET, 'modproxy');
const DOCUMENT = fs.readFileSync(path.join(REPO, 'proxy/tests/fixtures/contract/todo.json'));
const EDGE_DOCUMENT = fs.readFileSync(path.join(HERE, 'edge_contract.json'));
const GENERATED = path.join(HERE, 'generated');
const TSC = path.join(HERE, 'node_modules/typescript/bin/tsc');
const PYTHON = path.join(REPO, '.venv/bin/python');
const RUFF = path.join(REPO, '.venv/bin/ruff');

/** The example backends: how each starts on an address, and the module its client is generated for. */
const EXAMPLES = {
  rust: { module: 'todo-rust', command: (addr) => [path.join(TARGET, 'rust-backend'), addr] },
  python: {
    module: 'todo-python',
    command: (addr) => [path.join(REPO, '.venv/bin/python'), path.join(REPO, 'examples/python-backend/app.py'), addr],
  },
  node: { module: 'todo-node', command: (addr) => [process.execPath, path.join(REPO, 'examples/node-backend/index.js'), addr] },
};

/**
 * The committed backend-to-backend stubs: each generated from the example whose module its example's
 * `stats` calls (the examples' default peers), and compared here with what that example generates now.
 */
const PEER_STUBS = [
  { committed: 'examples/python-backend/peer_client.py', module: 'todo-node', lang: 'py', from: 'node', file: 'peer_python.py', address: '127.0.0.1:21232' },
  { committed: 'examples/node-backend/peer_client.js', module: 'todo-rust', lang: 'node', from: 'rust', file: 'peer_node.cjs', address: '127.0.0.1:21230' },
];

/** How long an example backend gets to accept connections, and to exit once asked to. */
const START_MS = 30_000;
const STOP_MS = 5_000;

let servers = [];
/** Every backend process started, as soon as it is spawned, so that `after` ends it whatever failed. */
const backends = [];

// Belt and braces: should this process end without `after` running, the backends end with it.
process.on('exit', () => {
  for (const { child } of backends) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Answers every frame with `contract` (a fixture document), as a backend answers `_describe`. */
function standIn(contract) {
  return net.createServer((socket) => {
    socket.once('data', () => {
      const document = Buffer.from(JSON.stringify(JSON.parse(contract)));
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

/** A stand-in backend answering `_describe` with `contract`; resolves to its address. */
async function serveContract(contract) {
  const server = standIn(contract);
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${server.address().port}`;
}

before(async () => {
  fs.rmSync(GENERATED, { recursive: true, force: true });
  fs.mkdirSync(GENERATED);
  const fixture = await serveContract(DOCUMENT);
  const edge = await serveContract(EDGE_DOCUMENT);
  // Asynchronous: the stand-in backends answer on this process's event loop.
  await generate('todo', 'ts', fixture, 'todo.ts');
  await generate('todo', 'js', fixture, 'todo_js.js');
  // The backend-to-backend clients; .cjs, since this directory's package is an ES module one.
  await generate('todo', 'py', fixture, 'todo_stub.py');
  await generate('todo', 'node', fixture, 'todo_stub.cjs');
  await generate('edge-cases', 'py', edge, 'edge_stub.py');
  await generate('edge-cases', 'node', edge, 'edge_stub.cjs');
  // The examples start side by side; every one that started is stopped in `after`, even if another failed.
  const started = await Promise.allSettled(Object.keys(EXAMPLES).map(startExample));
  const failed = started.filter(({ status }) => status === 'rejected').map(({ reason }) => reason.message);
  if (failed.length > 0) throw new Error(failed.join('\n'));
  const addresses = Object.fromEntries(Object.keys(EXAMPLES).map((lang, i) => [lang, started[i].value]));
  await Promise.all([
    ...Object.entries(EXAMPLES).flatMap(([lang, { module }]) => [
      generate(module, 'ts', addresses[lang], `todo_${lang}.ts`),
      generate(module, 'js', addresses[lang], `todo_${lang}_js.js`),
    ]),
    ...PEER_STUBS.map(({ module, lang, from, file }) => generate(module, lang, addresses[from], file)),
  ]);
  // mypy and the Node stubs' tsc run from here on, beside the tests that do not need them.
  mypyErrors();
  nodeTscErrors();
});

after(async () => {
  for (const server of servers) server.close();
  await Promise.all(backends.map(stop));
});

/** Runs `command`; resolves to its exit status (or spawn error) and output, whatever the status. */
function run(command, args, options = {}) {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: HERE, maxBuffer: 16 << 20, ...options }, (error, stdout, stderr) => {
      const spawnError = typeof error?.code === 'string' ? error : undefined;
      resolve({ status: spawnError ? null : (error?.code ?? 0), spawnError, stdout, stderr });
    });
  });
}

/** Every .ts file here, right uses and misuses, in one tsc program (which takes in the clients they import). */
const SOURCES = fs.readdirSync(HERE).filter((file) => file.endsWith('.ts')).sort();
/** The files each test looks at for errors: none in right uses and the clients they import. */
const FIXTURE_USES = ['use.ts', 'use_js.ts', 'generated/todo.ts', 'generated/todo_js.js'];
const exampleUses = (lang) => [`use_${lang}.ts`, `generated/todo_${lang}.ts`, `generated/todo_${lang}_js.js`];
const ERROR = /^(\S+)\((\d+),\d+\): error (TS\d+): (.*)$/;
let compiled;

/**
 * tsc's errors in tsc's order, each `{ file, line, text }`: `line` is `FILE:LINE: TSnnnn message`, the
 * first line of the error, and `text` all of it; or an Error if tsc said anything else, which fails every
 * test rather than let one pass vacuously.
 */
function parseTsc({ status, spawnError, stdout, stderr }) {
  const errors = [];
  for (const line of stdout.split('\n')) {
    const match = ERROR.exec(line);
    if (match) {
      const [, file, at, code, message] = match;
      errors.push({ file, line: `${file}:${at}: ${code} ${message}`, text: line });
    } else if (line && /^\s/.test(line) && errors.length > 0) {
      errors.at(-1).text += `\n${line}`;
    } else if (line) {
      return new Error(`tsc said more than errors (status ${status}):\n${stdout}${stderr}`);
    }
  }
  if (spawnError || stderr || ![0, 1, 2].includes(status)) {
    return new Error(`tsc failed (status ${status}): ${spawnError ?? ''}\n${stdout}${stderr}`);
  }
  return errors;
}

/**
 * tsc --strict over SOURCES, once for every test (one program takes seconds; the files are modules, so
 * one file's errors do not touch another's): see parseTsc. Browser code: the DOM's types, not Node's
 * (node_modules/@types/node is for the Node stubs' program), hence type roots where there are none.
 */
function tscErrors() {
  compiled ??= (() => {
    const args = [TSC, '--noEmit', '--strict', '--pretty', 'false', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', '--lib', 'es2022,dom', '--typeRoots', path.join(HERE, 'no-type-roots'), '--allowJs', '--checkJs', ...SOURCES];
    const { status, error, stdout, stderr } = spawnSync(process.execPath, args, { cwd: HERE, encoding: 'utf8' });
    return parseTsc({ status, spawnError: error, stdout, stderr });
  })();
  if (compiled instanceof Error) throw compiled;
  return compiled;
}

/** Asserts that `errors`' first lines in `files` are exactly `expected`, saying all of them if not. */
function assertSaid(tool, errors, files, expected) {
  errors = errors.filter(({ file }) => files.includes(file));
  const actual = errors.map(({ line }) => line);
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    const list = (lines) => (lines.length > 0 ? lines.map((line) => `  ${line}`).join('\n') : '  (none)');
    const said = errors.map(({ text }) => text).join('\n') || '(nothing)';
    assert.fail(`${tool}'s errors in ${files.join(', ')}:\n${list(actual)}\nexpected:\n${list(expected)}\n${tool} said:\n${said}`);
  }
}

/** Asserts that tsc's errors in `files` are exactly `expected` (first lines), saying all of them if not. */
function assertErrors(files, expected) {
  assertSaid('tsc', tscErrors(), files, expected);
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

// ---- Backend-to-backend clients (issue 25): `--lang py` and `--lang node`. ----

for (const stub of PEER_STUBS) {
  test(`${stub.committed} is what the running ${stub.from} example generates now`, () => {
    const committed = fs.readFileSync(path.join(REPO, stub.committed), 'utf8');
    const fresh = fs.readFileSync(path.join(GENERATED, stub.file), 'utf8');
    if (fresh === committed) return;
    const [ours, theirs] = [committed.split('\n'), fresh.split('\n')];
    const at = ours.findIndex((line, i) => line !== theirs[i]);
    const line = at === -1 ? ours.length : at;
    assert.fail(
      `${stub.committed} differs from what the ${stub.from} example's contract generates now (tests/client/generated/${stub.file}), ` +
        `first at line ${line + 1}:\n  committed: ${JSON.stringify(ours[line])}\n  generated: ${JSON.stringify(theirs[line])}\n` +
        `Regenerate it with the ${stub.from} example running on its default address:\n` +
        `  modproxy client --module ${stub.module} --lang ${stub.lang} --from ${stub.address} --out ${stub.committed}`,
    );
  });
}

/** Python files mypy reads: the committed stub with its real use (the example), right uses, misuses, and the generated stubs. */
const PY_USES = ['../../examples/python-backend/app.py', '../../examples/python-backend/peer_client.py', 'use_stub.py', 'generated/todo_stub.py', 'generated/edge_stub.py'];
const MYPY_LINE = /^(\S+?):(\d+): (error|note): (.*?)(?:  \[([a-z-]+)\])?$/;
let mypyRun;

/**
 * mypy --strict over PY_USES and misuse_stub.py, in one run (started by `before`), resolving to its
 * errors as `{ file, line, text }` (`line` is `FILE:LINE: [code] message`), or an Error if mypy said
 * anything else.
 */
function mypyErrors() {
  mypyRun ??= run(PYTHON, ['-m', 'mypy', '--strict', '--cache-dir', path.join(GENERATED, '.mypy_cache'), ...PY_USES, 'misuse_stub.py'], {
    env: { ...process.env, MYPYPATH: [GENERATED, path.join(REPO, 'examples/python-backend')].join(path.delimiter) },
  }).then(({ status, spawnError, stdout, stderr }) => {
    const errors = [];
    for (const line of stdout.split('\n')) {
      const match = MYPY_LINE.exec(line);
      if (match?.[3] === 'error') {
        const [, file, at, , message, code] = match;
        errors.push({ file, line: `${file}:${at}: [${code}] ${message}`, text: line });
      } else if (match) {
        errors.at(-1).text += `\n${line}`;
      } else if (line && !/^(Success: no issues found|Found \d+ errors?) in \d+ (source )?files?/.test(line)) {
        return new Error(`mypy said more than errors (status ${status}):\n${stdout}${stderr}`);
      }
    }
    if (spawnError || stderr || ![0, 1].includes(status) || (status === 1) !== errors.length > 0) {
      return new Error(`mypy failed (status ${status}): ${spawnError ?? ''}\n${stdout}${stderr}`);
    }
    return errors;
  });
  return mypyRun.then((errors) => {
    if (errors instanceof Error) throw errors;
    return errors;
  });
}

test('mypy --strict: the Python example\'s call through its stub, and right uses of the stubs, type', async () => {
  assertSaid('mypy', await mypyErrors(), PY_USES, []);
});

// misuse_stub.py: one misuse a line, lines 14 to 19; nothing else in it may fail.
test('mypy --strict: a wrong argument type, a key the result lacks, the wrong client... are refused', async () => {
  const file = 'misuse_stub.py';
  assertSaid('mypy', await mypyErrors(), [file], [
    `${file}:14: [typeddict-item] Incompatible types (expression has type "str", TypedDict item "id" has type "int")`,
    `${file}:15: [typeddict-item] TypedDict "CountResult" has no key "total"`,
    `${file}:16: [arg-type] Argument 1 to "TodoNode" has incompatible type "AsyncClient"; expected "Client"`,
    `${file}:17: [typeddict-item] Incompatible types (expression has type "Literal['purple']", TypedDict item "color" has type "Literal['red', 'green', 'blue']")`,
    `${file}:18: [typeddict-item] Missing key "title" for TypedDict "AddData"`,
    `${file}:18: [typeddict-unknown-key] Extra key "titel" for TypedDict "AddData"`,
    `${file}:19: [typeddict-item] Incompatible types (expression has type "Literal['c']", TypedDict item "from" has type "Literal['a', 'it\\'s "b"']")`,
  ]);
});

test('mypy has no errors in files the tests above do not look at', async () => {
  const errors = await mypyErrors();
  assertSaid('mypy', errors, [...new Set(errors.map(({ file }) => file))].filter((file) => ![...PY_USES, 'misuse_stub.py'].includes(file)), []);
});

test('the Python stubs pass ruff as generated: this repository\'s settings, and ruff\'s own defaults', async () => {
  const stubs = ['generated/todo_stub.py', 'generated/edge_stub.py', '../../examples/python-backend/peer_client.py'];
  const ours = ['--config', path.join(REPO, 'sdk-python/pyproject.toml')];
  const defaults = ['--isolated', '--target-version', 'py39'];
  for (const args of [
    ['check', ...ours],
    ['format', '--check', ...ours],
    ['check', ...defaults, '--select', 'E,W,F,I,UP,B,RUF,ANN,N'],
    ['format', '--check', ...defaults],
  ]) {
    const { status, spawnError, stdout, stderr } = await run(RUFF, [...args, '--no-cache', ...stubs]);
    assert.equal(status, 0, `ruff ${args.join(' ')}: ${spawnError ?? ''}\n${stdout}${stderr}`);
  }
});

test('the Python stubs run: each method calls its method with its data, in both classes', async () => {
  const script = `
import asyncio
import edge_stub, todo_stub

class Fake:
    def call(self, method, data=None):
        return [method, data]

class AsyncFake:
    async def call(self, method, data=None):
        return [method, data]

def expect(got, want):
    assert got == want, f"{got!r}, not {want!r}"

expect(todo_stub.Todo(Fake()).add({"a": 1, "b": 2}), ["add", {"a": 1, "b": 2}])
expect(todo_stub.Todo(Fake()).any(), ["any", None])
expect(edge_stub.EdgeCases(Fake()).put_item({"from": "a"}), ["put-item", {"from": "a"}])
expect(asyncio.run(edge_stub.AsyncEdgeCases(AsyncFake()).list_items([])), ["listItems", []])
try:
    edge_stub.EdgeCases(Fake()).call_import(None)
except AssertionError as error:
    assert "import replied" in str(error), error
else:
    raise SystemExit("call_import returned")
print("ran")
`;
  const { status, spawnError, stdout, stderr } = await run(PYTHON, ['-c', script], { env: { ...process.env, PYTHONPATH: GENERATED } });
  assert.equal(`${status} ${stdout}`, '0 ran\n', `${spawnError ?? ''}${stdout}${stderr}`);
});

/** Node files tsc reads for the Node stubs: the example's real use of its stub, right uses, the generated stubs. */
const NODE_USES = ['../../examples/node-backend/index.js', '../../examples/node-backend/peer_client.js', 'use_stub.cjs', 'generated/todo_stub.cjs', 'generated/edge_stub.cjs'];
let nodeCompiled;

/**
 * tsc --checkJs --strict over NODE_USES and misuse_stub.cjs as Node code (CommonJS, Node's types, no DOM),
 * one program apart from the browser clients' (started by `before`): see parseTsc.
 */
function nodeTscErrors() {
  const args = [TSC, '--noEmit', '--strict', '--pretty', 'false', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022', '--types', 'node', '--allowJs', '--checkJs', ...NODE_USES, 'misuse_stub.cjs'];
  nodeCompiled ??= run(process.execPath, args).then(parseTsc);
  return nodeCompiled.then((errors) => {
    if (errors instanceof Error) throw errors;
    return errors;
  });
}

test('tsc --checkJs --strict: the Node example\'s call through its stub, and right uses of the stubs, type', async () => {
  assertSaid('tsc', await nodeTscErrors(), NODE_USES, []);
});

// misuse_stub.cjs: one misuse a line, lines 13 to 17; nothing else in it may fail.
test('tsc --checkJs --strict: a wrong argument type, a field the result lacks, no client... are refused', async () => {
  const file = 'misuse_stub.cjs';
  assertSaid('tsc', await nodeTscErrors(), [file], [
    `${file}:13: TS2322 Type 'string' is not assignable to type 'number'.`,
    `${file}:14: TS2339 Property 'total' does not exist on type 'CountResult'.`,
    `${file}:15: TS2353 Object literal may only specify known properties, and 'send' does not exist in type 'Caller'.`,
    `${file}:16: TS2322 Type '"purple"' is not assignable to type '"red" | "green" | "blue"'.`,
    `${file}:17: TS2561 Object literal may only specify known properties, but 'titel' does not exist in type 'AddData'. Did you mean to write 'title'?`,
  ]);
});

test('tsc has no errors in Node files the tests above do not look at', async () => {
  const errors = await nodeTscErrors();
  assertSaid('tsc', errors, [...new Set(errors.map(({ file }) => file))].filter((file) => ![...NODE_USES, 'misuse_stub.cjs'].includes(file)), []);
});

test('the Node stubs run: each method calls its method with its data', async () => {
  const require = createRequire(import.meta.url);
  const { Todo } = require('./generated/todo_stub.cjs');
  const { EdgeCases } = require('./generated/edge_stub.cjs');
  const fake = { call: async (method, data) => [method, data] };
  assert.deepEqual(await new Todo(fake).add({ a: 1, b: 2 }), ['add', { a: 1, b: 2 }]);
  assert.deepEqual(await new Todo(fake).any(), ['any', undefined]);
  assert.deepEqual(await new EdgeCases(fake).putItem({ from: 'a' }), ['put-item', { from: 'a' }]);
  assert.deepEqual(await new EdgeCases(fake).listItems([]), ['listItems', []]);
});
