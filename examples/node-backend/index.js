#!/usr/bin/env node
'use strict';
// An in-memory todo list served to the browser through Module Proxy (module `todo-node` in
// conf/default.toml), the same as the Rust and Python examples:
//
//   add  {"title": "…"}  → the new todo {id, title, done}; `invalid` if the title is empty or over 200 characters
//   list                 → {todos: [...]}
//   done {"id": n}       → the todo, now done; `not_found` if no todo has that id
//
//   node examples/node-backend/index.js [host:port]
//
// The address comes from the first argument, else MODPROXY_LISTEN, else 127.0.0.1:21232.

// By relative path, so the example runs from a checkout without publishing the package.
const { Backend, MethodError } = require('../../sdk-node');

const DEFAULT_ADDR = '127.0.0.1:21232';
const MAX_TITLE = 200;

const todos = new Map();
let nextId = 1;

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
});

backend.method('list', () => ({ todos: [...todos.values()] }));

backend.method('done', (data) => {
  const todo = todos.get(data?.id);
  if (!todo) throw new MethodError('not_found', `no todo has id ${JSON.stringify(data?.id)}`);
  todo.done = true;
  return todo;
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
