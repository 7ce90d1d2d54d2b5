// A typed backend, compiled by `tsc --noEmit` to check index.d.ts (CommonJS flavour). Not run.
import { Backend, Client, MethodError, FrameError, decodeFrames, type BoundAddress, type Head, type ListenOptions } from 'modproxy-sdk';

interface Todo {
  id: number;
  title: string;
  done: boolean;
}

const todos: Todo[] = [];
const backend = new Backend();

backend
  .method('add', (data: { title: string }): Todo => {
    if (data.title === '') throw new MethodError('invalid', 'title must not be empty');
    const todo = { id: todos.length + 1, title: data.title, done: false };
    todos.push(todo);
    return todo;
  })
  .method('whoami', async (_data: null, head: Head) => ({ method: head.method, token: head.token ?? null }))
  .method('list', () => ({ todos }));

async function main(): Promise<void> {
  const bound: BoundAddress = await backend.listen('127.0.0.1:0', { maxFrame: 1 << 20 });
  const port: number = bound.port;
  const address = backend.address();
  if (address !== null) console.log(address.family, port);
  await backend.close();

  try {
    const frames: Buffer[] = decodeFrames([Buffer.from('         2\r\n{}')], 1024);
    console.log(frames.length);
  } catch (error) {
    if (error instanceof FrameError) console.log(error.code, error.frames.length);
  }
  const err = new MethodError('not_found', 'no such todo');
  const code: string = err.code;
  console.log(code);
}

void main();

// @ts-expect-error: a handler must be a function
backend.method('bad', 42);
// @ts-expect-error: listen takes "host:port"
void backend.listen(8080);

// Self-registration in etcd: an option of listen.
const registered: ListenOptions = { register: { etcd: ['http://127.0.0.1:2379'], module: 'todo', ttl: 5 } };
void registered;
// @ts-expect-error: register needs the module
void backend.listen('127.0.0.1:0', { register: { etcd: ['http://127.0.0.1:2379'] } });
// A described method and a client of another backend.
backend.method('count', () => ({ count: 0 }), {
  doc: 'How many todos there are.',
  result: { type: 'object', properties: { count: { type: 'integer' } } },
});
// @ts-expect-error: doc is a string
backend.method('counted', () => 0, { doc: 3 });
async function peer(): Promise<number> {
  const client = new Client('127.0.0.1:8080', { module: 'todo-node', timeout: 5000 });
  const reply = await client.call<{ count: number }>('count');
  await client.close();
  return reply.count;
}
void peer;
