// Right uses of the Node clients `modproxy client --lang node` generates, CommonJS as a Node backend
// writes them: tsc --checkJs --strict must find nothing wrong here (client.test.js checks). peer_client.js
// is the stub committed in examples/node-backend (the Rust example's contract); todo_stub.cjs and
// edge_stub.cjs are generated from todo.json and edge_contract.json.
'use strict';

const { Client } = require('../../sdk-node');
const { TodoRust } = require('../../examples/node-backend/peer_client.js');
const { Todo } = require('./generated/todo_stub.cjs');
const { EdgeCases } = require('./generated/edge_stub.cjs');

/** @param {Client} client */
async function uses(client) {
  const peer = new TodoRust(client);
  const todo = await peer.add({ title: 'milk' });
  await peer.add({}); // the Rust example's title has a default
  /** @type {number} */
  const id = todo.id;
  /** @type {boolean} */
  const finished = (await peer.done({ id })).done;
  /** @type {number} */
  const count = (await peer.count()).count; // `data` that admits null may be left out
  /** @type {string[]} */
  const titles = (await peer.list()).todos.map((each) => each.title);

  const fixture = new Todo(client);
  /** @type {import('./generated/todo_stub.cjs').TagItem} */
  const item = { id: 1, color: 'green', labels: ['x'] };
  /** @type {'tagged' | boolean} */
  const tagged = await fixture.tag({ item, note: null });
  /** @type {number} */
  const sum = await fixture.add({ a: 1, b: 2 });
  await fixture.any();

  const edge = new EdgeCases(client);
  const reply = await edge.putItem({ from: 'it\'s "b"', 'note-x': 'x' });
  const found = await edge.find();
  await edge.tree({ children: [{ children: [], value: ['leaf'] }], value: 'root' });
  // Anything with the Client's `call` will do, a test double included.
  const double = new TodoRust({ call: async () => ({ count: 0 }) });
  return id + Number(finished) + count + titles.length + Number(tagged === true) + sum
    + Number(reply !== null && 'ok' in reply) + (found?.a ?? 0) + (await double.count()).count;
}

module.exports = { uses, both: () => uses(new Client('127.0.0.1:1', { module: 'todo-rust' })) };
