'use strict';
// The Backend over real TCP: handlers of every shape, error replies, concurrency, and close().

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { setTimeout: sleep } = require('node:timers/promises');

const { Backend, MethodError } = require('..');
const { Client, call, frame } = require('./client.js');

describe('a backend with handlers of every shape', () => {
  const backend = new Backend();
  let port;

  before(async () => {
    backend
      .method('add', (data) => ({ sum: data.a + data.b }))
      .method('echo', async (data, head) => {
        await sleep(5);
        return { data, head };
      })
      .method('nothing', () => undefined)
      .method('date', () => ({ at: new Date(Date.UTC(2020, 0, 2)) }))
      .method('bigint', () => ({ n: 1n }))
      .method('not_found', (data) => {
        throw new MethodError('not_found', `no todo ${data.id}`);
      })
      .method('rejects_method_error', async () => {
        throw new MethodError('conflict', 'already done');
      })
      .method('throws', () => {
        throw new Error('kaput');
      })
      .method('throws_string', () => {
        throw 'plain string';
      })
      .method('throws_null', () => {
        throw null;
      })
      .method('rejects', () => Promise.reject(new TypeError('bad type')))
      .method('rejects_undefined', () => Promise.reject(undefined))
      .method('rejects_object', () => Promise.reject({ why: 'because' }))
      .method('throws_unshowable', () => {
        throw { toJSON() { throw new Error('no'); }, toString: undefined };
      })
      .method('throws_symbol', () => {
        throw Symbol('sym');
      })
      .method('thenable', () => ({ then: (resolve) => resolve({ via: 'thenable' }) }));
    ({ port } = await backend.listen('127.0.0.1:0'));
  });

  after(() => backend.close());

  test('a sync handler replies with its return value', async () => {
    assert.deepEqual(await call(port, 'add', { a: 2, b: 3 }), { sum: 5 });
  });

  test('an async handler receives (data, head), every head field included', async () => {
    const reply = await call(port, 'echo', { list: [1, 'two', null] }, { token: 'tok', trace: 7 });
    assert.deepEqual(reply, {
      data: { list: [1, 'two', null] },
      head: { method: 'echo', token: 'tok', trace: 7 },
    });
  });

  test('undefined becomes null, and values go through JSON.stringify', async () => {
    assert.equal(await call(port, 'nothing', null), null);
    assert.deepEqual(await call(port, 'date', null), { at: '2020-01-02T00:00:00.000Z' });
    assert.deepEqual(await call(port, 'thenable', null), { via: 'thenable' });
  });

  test('a MethodError, thrown or rejected, chooses the error reply', async () => {
    assert.deepEqual(await call(port, 'not_found', { id: 3 }), {
      error: { code: 'not_found', message: 'no todo 3' },
    });
    assert.deepEqual(await call(port, 'rejects_method_error', null), {
      error: { code: 'conflict', message: 'already done' },
    });
  });

  test('any other throw or rejection is a handler_error naming the method', async () => {
    const cases = {
      throws: 'kaput',
      throws_string: 'plain string',
      throws_null: 'null',
      rejects: 'bad type',
      rejects_undefined: 'undefined',
      rejects_object: '{"why":"because"}',
      bigint: 'BigInt',
      throws_unshowable: 'cannot be shown',
      throws_symbol: 'Symbol(sym)',
    };
    for (const [method, fragment] of Object.entries(cases)) {
      const { error } = await call(port, method, null);
      assert.equal(error.code, 'handler_error', method);
      assert.match(error.message, new RegExp(`'${method}'`), method);
      assert.ok(error.message.includes(fragment), `${method}: ${error.message}`);
    }
  });

  test('a sync throw leaves the process and the connection serving', async () => {
    const client = await Client.connect(port);
    try {
      assert.equal((await client.call('throws', null)).error.code, 'handler_error');
      assert.deepEqual(await client.call('add', { a: 1, b: 1 }), { sum: 2 });
    } finally {
      client.destroy();
    }
  });

  test('the core answers _ping, unknown methods and bad requests', async () => {
    assert.deepEqual(await call(port, '_ping', null), { pong: true });
    assert.equal((await call(port, 'nope', null)).error.code, 'method_not_found');
    const client = await Client.connect(port);
    try {
      client.write(frame('not json'));
      assert.equal(JSON.parse(await client.next()).error.code, 'bad_request');
      client.write(frame('{"data": 1}'));
      assert.equal(JSON.parse(await client.next()).error.code, 'bad_request');
    } finally {
      client.destroy();
    }
  });

  test('one connection carries many calls in sequence', async () => {
    const client = await Client.connect(port);
    try {
      for (let i = 0; i < 50; i += 1) {
        assert.deepEqual(await client.call('add', { a: i, b: 1 }), { sum: i + 1 });
      }
    } finally {
      client.destroy();
    }
  });

  test('requests written byte by byte are reassembled', async () => {
    const client = await Client.connect(port);
    try {
      const bytes = frame(JSON.stringify({ head: { method: 'add' }, data: { a: 40, b: 2 } }));
      for (const byte of bytes) {
        client.write(Buffer.from([byte]));
        await sleep(0);
      }
      assert.deepEqual(JSON.parse(await client.next()), { sum: 42 });
    } finally {
      client.destroy();
    }
  });
});

test('100 concurrent calls to a handler waiting 200 ms overlap', async () => {
  const backend = new Backend().method('wait', async (data) => {
    await sleep(200);
    return { i: data.i };
  });
  const { port } = await backend.listen('127.0.0.1:0');
  try {
    const started = performance.now();
    const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => call(port, 'wait', { i })));
    const elapsed = performance.now() - started;
    replies.forEach((reply, i) => assert.deepEqual(reply, { i }));
    console.log(`# 100 concurrent 200 ms calls took ${elapsed.toFixed(0)} ms`);
    assert.ok(elapsed < 2000, `took ${elapsed} ms; calls did not overlap`);
  } finally {
    await backend.close();
  }
});

test('calls that arrive together reach JavaScript in one batch, each with its own reply', async () => {
  // The handler notes how many calls it answers in one synchronous turn of the JavaScript thread.
  const turns = [];
  let current = null;
  const backend = new Backend()
    .method('note', (data) => {
      if (current === null) {
        current = { calls: 0 };
        turns.push(current);
        queueMicrotask(() => {
          current = null;
        });
      }
      current.calls += 1;
      return { i: data.i };
    })
    .method('fails', (data) => {
      throw new MethodError('odd', `no ${data.i}`);
    });
  const { port } = await backend.listen('127.0.0.1:0');
  const client = await Client.connect(port);
  try {
    // Twenty frames in one write, as a pipelining proxy sends them: the core answers them together.
    const asks = Array.from({ length: 20 }, (_, i) => (i % 5 === 4 ? ['fails', i] : ['note', i]));
    client.write(Buffer.concat(asks.map(([method, i]) => frame(JSON.stringify({ head: { method }, data: { i } })))));
    for (const [method, i] of asks) {
      const reply = JSON.parse((await client.next()).toString('utf8'));
      assert.deepEqual(reply, method === 'note' ? { i } : { error: { code: 'odd', message: `no ${i}` } });
    }
    // Usually one turn for all sixteen; the core's threads may race the batching, never to one per call.
    const sizes = turns.map((turn) => turn.calls);
    assert.equal(sizes.reduce((a, b) => a + b, 0), 16);
    assert.ok(sizes.length < 16, `calls crossed one by one: ${sizes}`);
  } finally {
    client.destroy();
    await backend.close();
  }
});

test('close() finishes the call in flight, then stops accepting', async () => {
  let entered;
  const inside = new Promise((resolve) => {
    entered = resolve;
  });
  const backend = new Backend().method('slow', async () => {
    entered();
    await sleep(300);
    return { finished: true };
  });
  const { port } = await backend.listen('127.0.0.1:0');
  const reply = call(port, 'slow', null);
  await inside;
  const started = performance.now();
  await backend.close();
  assert.ok(performance.now() - started >= 200, 'close() waited for the call');
  assert.deepEqual(await reply, { finished: true });
  assert.equal(backend.address(), null);
  await assert.rejects(
    () =>
      new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', resolve);
        socket.once('error', reject);
      }),
    { code: 'ECONNREFUSED' },
  );
});

describe('lifecycle errors', () => {
  test('listen() rejects clearly when the address is taken', async () => {
    const first = new Backend();
    const { port } = await first.listen('127.0.0.1:0');
    try {
      await assert.rejects(new Backend().listen(`127.0.0.1:${port}`), (error) => {
        assert.match(error.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
        assert.match(error.message, /in use/i);
        return true;
      });
    } finally {
      await first.close();
    }
  });

  test('listen() rejects an address that is not host:port', async () => {
    await assert.rejects(new Backend().listen('no-port-here'), /cannot listen on no-port-here/);
    await assert.rejects(new Backend().listen(8080), TypeError);
  });

  test('methods are registered before listen(), and listen() happens once', async () => {
    const backend = new Backend();
    await backend.listen('127.0.0.1:0');
    try {
      assert.throws(() => backend.method('late', () => 1), /before listen\(\)/);
      await assert.rejects(backend.listen('127.0.0.1:0'), /listens once/);
    } finally {
      await backend.close();
    }
    await backend.close();
  });

  test('MethodError subclasses and copies are recognised', async () => {
    class NotFound extends MethodError {
      constructor(what) {
        super('not_found', `no ${what}`);
      }
    }
    assert.ok(new NotFound('x') instanceof MethodError);
    assert.ok(!(new MethodError('a', 'b') instanceof NotFound));
    const copy = Object.assign(Object.create({ [Symbol.for('modproxy-sdk.MethodError')]: true }), {
      code: 'gone',
      message: 'from another copy of the package',
    });
    const backend = new Backend()
      .method('sub', () => {
        throw new NotFound('todo 9');
      })
      .method('copy', () => {
        throw copy;
      });
    const { port } = await backend.listen('127.0.0.1:0');
    try {
      assert.deepEqual(await call(port, 'sub', null), { error: { code: 'not_found', message: 'no todo 9' } });
      assert.deepEqual(await call(port, 'copy', null), {
        error: { code: 'gone', message: 'from another copy of the package' },
      });
    } finally {
      await backend.close();
    }
  });

  test('bad registrations are TypeErrors', () => {
    const backend = new Backend();
    assert.throws(() => backend.method(7, () => 1), TypeError);
    assert.throws(() => backend.method('x', 'not a function'), TypeError);
    assert.throws(() => new MethodError('', 'message'), TypeError);
  });

  test('empty, reserved and duplicate names are refused by the core', () => {
    const backend = new Backend().method('x', () => 1);
    for (const [name, message] of [
      ['', /must not be empty/],
      ['_ping', /'_ping' begins with '_', which is reserved for the protocol/],
      ['_pipeline', /reserved for the protocol/],
      ['x', /'x' is already registered/],
    ]) {
      assert.throws(() => backend.method(name, () => 2), { name: 'Error', message }, JSON.stringify(name));
    }
  });

  test('close() right after listen() waits for the bind, then closes', async () => {
    const backend = new Backend();
    const listening = backend.listen('127.0.0.1:0');
    const closing = backend.close();
    const { port } = await listening;
    await closing;
    assert.equal(backend.address(), null);
    await assert.rejects(call(port, '_ping', null), { code: 'ECONNREFUSED' });
  });

  test('close() before listen() resolves', async () => {
    await new Backend().close();
  });
});
