'use strict';
// The Node side of tests/stack.py: runs it as a subprocess, so that the proxy and the example backends
// are started, waited for and stopped the same way for every harness, whatever its language.

const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const REPO = path.resolve(__dirname, '..');
// The repository's venv when there is one: its Python has the SDK the Python example needs.
const VENV_PYTHON = path.join(REPO, '.venv', 'bin', 'python');
const PYTHON = fs.existsSync(VENV_PYTHON) ? VENV_PYTHON : 'python3';

/**
 * Starts the proxy in front of example backends. `modules` maps an example's language to the module it
 * serves, e.g. `{ node: 'js' }`; `settings` go into every module entry, `server` lines into [server].
 * Resolves to `{ url, home, ports, stop(name, signal), output(), close() }`: `stop` ends one process (a
 * language's backend, or 'proxy') and resolves to its `{ code, signal }`; `output` is the end of what they
 * all wrote to stderr; `close` ends everything.
 */
async function startStack({ modules, settings = '', server = '' }) {
  const args = [path.join(__dirname, 'stack.py'), '--settings', settings, '--server', server];
  for (const [lang, module] of Object.entries(modules)) args.push('--module', `${lang}=${module}`);
  const launcher = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  launcher.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const exited = once(launcher, 'exit');
  const lines = readline.createInterface({ input: launcher.stdout })[Symbol.asyncIterator]();
  const answer = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`tests/stack.py ended without an answer:\n${stderr}`);
    const parsed = JSON.parse(value);
    if (parsed.error) throw new Error(`tests/stack.py: ${parsed.error}\n${stderr}`);
    return parsed;
  };
  let ready;
  try {
    ready = await answer();
  } catch (error) {
    launcher.kill();
    throw error;
  }
  // One command at a time, so that each answer is matched with its command.
  let queue = Promise.resolve();
  return {
    url: ready.url,
    home: ready.home,
    ports: ready.ports,
    stop(name, signal = 'SIGTERM') {
      const done = queue.then(() => {
        launcher.stdin.write(`stop ${name} ${signal.replace(/^SIG/, '')}\n`);
        return answer();
      });
      queue = done.catch(() => {});
      return done.then(({ code, signal: by }) => ({ code, signal: by }));
    },
    output() {
      return stderr;
    },
    async close() {
      if (launcher.exitCode === null && launcher.signalCode === null) {
        launcher.stdin.end();
        await exited;
      }
    },
  };
}

module.exports = { startStack };
