'use strict';
// Self-registration in a real etcd (/usr/bin/etcd; `make etcd` installs it), on free ports.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const net = require('node:net');
const os = require('node:os');
const fs = require('node:fs');
const { spawn, execFileSync } = require('node:child_process');
const { once } = require('node:events');
const { setTimeout: sleep } = require('node:timers/promises');

const { Backend } = require('..');

const PREFIX = '/modproxy/modules/node/';
let etcd;
let url;
let dataDir;

async function freePort() {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

async function until(check, ms, what) {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) assert.fail(`${what} within ${ms} ms`);
    await sleep(50);
  }
  return Date.now() - start;
}

function registered() {
  const out = execFileSync('etcdctl', ['--endpoints', url, 'get', '--prefix', PREFIX, '--print-value-only'], {
    env: { ...process.env, ETCDCTL_API: '3' },
    encoding: 'utf8',
  });
  return out.split('\n').filter((line) => line);
}

function listening(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.end();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

before(async () => {
  const [client, peer] = [await freePort(), await freePort()];
  url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-'));
  etcd = spawn(
    '/usr/bin/etcd',
    ['--name', 'default', '--data-dir', dataDir, '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `default=${peerUrl}`],
    { stdio: 'ignore' },
  );
  const start = Date.now();
  while (!(await listening(client))) {
    if (Date.now() - start > 20000) throw new Error('etcd did not start');
    await sleep(50);
  }
});

after(() => {
  etcd.kill('SIGKILL');
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test('a listening backend registers and close() revokes at once', async () => {
  const backend = new Backend();
  const bound = await backend.listen('127.0.0.1:0', { register: { etcd: [url], module: 'node', ttl: 10 } });
  const addr = `127.0.0.1:${bound.port}`;
  await until(() => registered().join() === addr, 10000, 'registered');
  await backend.close();
  // Revoked, not left to its 10 s TTL.
  await until(() => registered().length === 0, 2000, 'revoked');
});

test('a backend killed with SIGKILL goes within its TTL', async () => {
  const script =
    "const { Backend } = require(process.argv[1]);" +
    "new Backend().listen('127.0.0.1:0', { register: { etcd: [process.argv[2]], module: 'node', ttl: 2 } })" +
    '.then((b) => console.log(b.port));';
  const child = spawn(process.execPath, ['-e', script, path.join(__dirname, '..'), url], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [chunk] = await once(child.stdout, 'data');
  const addr = `127.0.0.1:${String(chunk).trim()}`;
  await until(() => registered().join() === addr, 10000, 'registered');
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.deepEqual(registered(), [addr], 'nothing revoked it: it stays until the lease ends');
  await until(() => registered().length === 0, 5000, 'gone at the TTL');
});

test('a TTL under a second is refused', async () => {
  const backend = new Backend();
  await assert.rejects(
    backend.listen('127.0.0.1:0', { register: { etcd: [url], module: 'node', ttl: 0.5 } }),
    /ttl must be at least 1 second/,
  );
});
