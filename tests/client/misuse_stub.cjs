// Misuses of the Node clients `modproxy client --lang node` generates: tsc --checkJs --strict must refuse
// exactly lines 13 to 17, each for its reason (client.test.js asserts where and why).
'use strict';

const { Client } = require('../../sdk-node');
const { TodoRust } = require('../../examples/node-backend/peer_client.js');
const { Todo } = require('./generated/todo_stub.cjs');

const client = new Client('127.0.0.1:1', { module: 'todo-rust' });

async function misuses() {
  // One misuse a line, lines 13 to 17: nothing else here may fail.
  await new TodoRust(client).done({ id: 'one' });
  console.log((await new TodoRust(client).count()).total);
  new TodoRust({ send: async () => null });
  await new Todo(client).tag({ item: { id: 1, color: 'purple' } });
  await new TodoRust(client).add({ titel: 'milk' });
}

module.exports = { misuses };
