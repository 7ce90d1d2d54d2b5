#!/usr/bin/env node
'use strict';
// An in-memory todo list served to the browser through Module Proxy (module `todo-node` in
// conf/default.toml), the same as the Rust and Python examples:
//
//   add  {"title": "…"}  → the new todo {id, title, done}; `invalid` if the title is empty or over 200 characters
//   list                 → {todos: [...]}
//   done {"id": n}       → the todo, now done; `not_found` if no todo has that id
//   count                → {count: n}
//   stats                → {count, peer, peer_count}: a backend-to-backend call, `count` of the module
//                          MODPROXY_PEER (default todo-rust) through the proxy's raw-frame port
//                          MODPROXY_PROXY (host:port, `[server] raw_frames = true`); `unavailable` unset
//
// Each method is registered with JSON Schemas of its data and reply, which `_describe` serves. The call in
// `stats` is typed: peer_client.js is generated from the Rust example's contract by
// `modproxy client --module todo-rust --lang node` (JSDoc types, which `tsc --checkJs` checks).
//
//   node examples/node-backend/index.js [host:port]
//
// The address comes from the first argument, else MODPROXY_LISTEN, else 127.0.0.1:21232.

// By relative path, so the example runs from a checkout without publishing the package.
const { Backend, Client, MethodError } = require('../../sdk-node');
const { TodoRust } = require('./peer_client.js');

const DEFAULT_ADDR = '127.0.0.1:21232';
const MAX_TITLE = 200;

const todos = new Map();
let nextId = 1;

const Todo = {
  title: 'Todo',
  type: 'object',
  properties: { id: { type: 'integer' }, title: { type: 'string' }, done: { type: 'boolean' } },
  required: ['id', 'title', 'done'],
};
const Count = { type: 'object', properties: { count: { type: 'integer' } }, required: ['count'] };

const backend = new Backend();

backend.method('add', (data) => {
  const title = typeof data?.title === 'string' ? data.title.trim() : '';
  if (title === '') throw new MethodError('invalid', 'the title is empty; give the todo a title');
  const chars = [...title].length; // characters, not UTF-16 units, as in the Rust and Python examples
  if (chars > MAX_TITLE) {
    throw new MethodError('invalid', `the title has ${chars} characters; the most is ${MAX_TITLE}`);
  }
  const todo = { id: nextId++, title, done: false };
  todos.set(todo.id, todo);
  return todo;
}, {
  doc: 'Adds a todo; `invalid` if the title is empty or over 200 characters.',
  data: { title: 'AddTodo', type: 'object', properties: { title: { type: 'string' } }, required: ['title'] },
  result: Todo,
});

backend.method('list', () => ({ todos: [...todos.values()] }), {
  doc: 'Every todo, oldest first.',
  result: { type: 'object', properties: { todos: { type: 'array', items: Todo } }, required: ['todos'] },
});

backend.method('done', (data) => {
  const todo = todos.get(data?.id);
  if (!todo) throw new MethodError('not_found', `no todo has id ${JSON.stringify(data?.id)}`);
  todo.done = true;
  return todo;
}, {
  doc: 'Marks a todo done; `not_found` if no todo has that id.',
  data: { title: 'DoneTodo', type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] },
  result: Todo,
});

backend.method('count', () => ({ count: todos.size }), { doc: 'How many todos there are.', result: Count });

backend.method('stats', async () => {
  const proxy = (process.env.MODPROXY_PROXY || '').trim();
  if (!proxy) throw new MethodError('unavailable', "set MODPROXY_PROXY to the proxy's raw-frame host:port");
  const peer = process.env.MODPROXY_PEER || 'todo-rust';
  // A client per call keeps the example short; a busy backend would keep one. TodoRust types the calls by
  // the peer's contract: count() resolves to a CountResult, whose `count` is a number.
  const client = new Client(proxy, { module: peer, timeout: 5000 });
  try {
    const { count } = await new TodoRust(client).count();
    return { count: todos.size, peer, peer_count: count };
  } finally {
    await client.close();
  }
}, {
  doc: "This list's count beside a peer module's, asked through the proxy.",
  result: {
    type: 'object',
    properties: { count: { type: 'integer' }, peer: { type: 'string' }, peer_count: { type: 'integer' } },
    required: ['count', 'peer', 'peer_count'],
  },
});

async function main() {
  const addr = process.argv[2] || process.env.MODPROXY_LISTEN || DEFAULT_ADDR;
  const bound = await backend.listen(addr);
  console.log(`node backend listening on ${bound.address}:${bound.port}`);
  // Finish the calls in flight before exiting on Ctrl-C or a service manager's stop; a second signal
  // while they finish stops at once (close() called again).
  let closing = false;
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      const stopped = backend.close();
      // The second signal: close() again stops the server at once; the calls' own timers are left behind.
      if (closing) stopped.then(() => process.exit(0));
      else console.log(`${signal}: closing`);
      closing = true;
    });
  }
}

main().catch((error) => {
  console.error(`node backend: ${error.message}`);
  process.exitCode = 1;
});
