'use strict';
// `_describe` from the schemas given at registration, and the Promise-based Client, over real TCP.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');

const sdk = require('..');
const { call } = require('./client.js');

const AddTodo = { type: 'object', properties: { title: { type: 'string' } }, required: ['title'] };

describe('a backend with described and undescribed methods', () => {
  const backend = new sdk.Backend();
  let port;
  let addr;

  before(async () => {
    backend
      .method('plain', (data) => data)
      .method('add', (data) => ({ id: 1, title: data.title }), {
        data: AddTodo,
        result: { type: 'object' },
        doc: 'Adds a todo.',
      })
      .method('refuse', (data) => {
        throw new sdk.MethodError('not_found', `no todo ${data}`);
      });
    ({ port } = await backend.listen('127.0.0.1:0'));
    addr = `127.0.0.1:${port}`;
  });

  after(() => backend.close());

  test('_describe lists every method in name order, {} for what was not given', async () => {
    const reply = await call(port, '_describe');
    assert.deepEqual(reply, {
      methods: [
        { name: 'add', doc: 'Adds a todo.', data: AddTodo, result: { type: 'object' } },
        { name: 'plain', doc: null, data: {}, result: {} },
        { name: 'refuse', doc: null, data: {}, result: {} },
      ],
    });
  });

  test('the Client calls, and an error reply rejects with a MethodError carrying its code', async () => {
    const client = new sdk.Client(addr, { timeout: 5000 });
    assert.deepEqual(await client.call('add', { title: 't' }), { id: 1, title: 't' });
    const sums = await Promise.all([1, 2, 3].map((n) => client.call('plain', n)));
    assert.deepEqual(sums, [1, 2, 3]);
    await assert.rejects(client.call('refuse', 3), (error) => {
      assert.ok(error instanceof sdk.MethodError);
      assert.equal(error.code, 'not_found');
      assert.equal(error.message, 'no todo 3');
      return true;
    });
    await assert.rejects(client.call('nope'), { code: 'method_not_found' });
    assert.equal(await client.call('plain'), null);
    await client.close();
  });
});

test('a bad schema is refused at registration', () => {
  const backend = new sdk.Backend();
  assert.throws(() => backend.method('a', () => 1, { data: 'string' }), /schema\.data/);
  assert.throws(() => backend.method('b', () => 1, { doc: 3 }), /schema\.doc/);
  assert.throws(() => backend.method('c', () => 1, null), /schema must be an object/);
});

test('a silent backend times out; a closed port is a connection error', async () => {
  const held = [];
  const silent = net.createServer((socket) => held.push(socket));
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address();
  await assert.rejects(new sdk.Client(`127.0.0.1:${port}`, { timeout: 300 }).call('x'), { code: 'ETIMEDOUT' });
  for (const socket of held) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
  await assert.rejects(new sdk.Client(`127.0.0.1:${port}`, { timeout: 1000 }).call('x'), { code: 'ECONNECTION' });
  assert.throws(() => new sdk.Client('127.0.0.1:1', { timeout: 0 }), /timeout/);
});
