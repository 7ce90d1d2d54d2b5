'use strict';
// Hostile peers (issue 9): garbage, oversized frames, half-closed connections and handlers that never
// return. None of them may stop other connections from being served.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const { Backend } = require('..');
const { Client, call, frame } = require('./client.js');

const MAX_FRAME = 64 * 1024;

describe('a backend beside hostile peers', () => {
  const backend = new Backend();
  let port;
  let release;
  const released = new Promise((resolve) => {
    release = resolve;
  });
  let entered = 0;
  const stuck = [];

  before(async () => {
    backend
      .method('add', (data) => data.a + data.b)
      .method('nap', async (ms) => {
        await sleep(ms);
        return ms;
      })
      // Never settles while the test runs: a handler that does not return.
      .method('hang', () => {
        entered += 1;
        return released.then(() => 'released');
      });
    ({ port } = await backend.listen('127.0.0.1:0', { maxFrame: MAX_FRAME }));
  });

  after(async () => {
    release();
    for (const client of stuck) client.destroy();
    await backend.close();
  });

  /** Two calls stuck in `hang`, each on its own connection. */
  async function hangTwo() {
    const before = entered;
    for (let i = 0; i < 2; i += 1) {
      const client = await Client.connect(port);
      client.write(frame(JSON.stringify({ head: { method: 'hang' }, data: null })));
      stuck.push(client);
    }
    while (entered < before + 2) await sleep(5);
  }

  /** 20 calls at once, each on a new connection; returns the milliseconds they took. */
  async function twentyFreshConnections() {
    const started = performance.now();
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => call(port, 'add', { a: i, b: 1 })));
    assert.deepEqual(replies, Array.from({ length: 20 }, (_, i) => i + 1));
    return performance.now() - started;
  }

  test('a half-closed connection still gets every reply', async () => {
    const client = await Client.connect(port);
    try {
      client.write(frame(JSON.stringify({ head: { method: 'nap' }, data: 100 })));
      client.write(frame(JSON.stringify({ head: { method: 'add' }, data: { a: 2, b: 3 } })));
      // The client is done sending: it shuts down its write side, then waits for the replies.
      client.end();
      assert.equal(JSON.parse(await client.next()), 100);
      assert.equal(JSON.parse(await client.next()), 5);
      assert.equal(await client.closed(), true, 'then the backend closes its side');
    } finally {
      client.destroy();
    }
  });

  test('a frame cut short by a half-close gets a bad_request reply', async () => {
    const client = await Client.connect(port);
    try {
      client.write(Buffer.from('        50\r\n{"head":', 'latin1'));
      client.end();
      assert.equal(JSON.parse(await client.next()).error.code, 'bad_request');
      assert.equal(await client.closed(), true);
    } finally {
      client.destroy();
    }
  });

  test('handlers that never return do not stop twenty other connections', async () => {
    await hangTwo();
    const took = await twentyFreshConnections();
    console.log(`20 connections beside two hung handlers took ${took.toFixed(1)} ms`);
    assert.ok(took < 3000, `${took} ms`);
    const waiting = await Promise.race([stuck[0].next().then(() => 'replied'), sleep(50).then(() => 'waiting')]);
    assert.equal(waiting, 'waiting', 'the hung call is still waiting');
  });

  test('garbage, oversized and half-closed peers do not disturb others', async () => {
    await hangTwo();

    // Binary garbage: a bad_request reply, then the backend closes.
    const garbage = await Client.connect(port);
    try {
      let seed = 9;
      const noise = Buffer.alloc(4096, 0).map(() => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed >> 23;
      });
      garbage.write(noise);
      assert.equal(JSON.parse(await garbage.next()).error.code, 'bad_request');
      await garbage.closed();
    } finally {
      garbage.destroy();
    }

    // An oversized frame whose megabyte of payload really follows: refused on its length line. The
    // reply may be lost to the reset that closing over unread bytes causes.
    const oversized = await Client.connect(port);
    try {
      oversized.write(Buffer.concat([Buffer.from('   1048576\r\n', 'latin1'), Buffer.alloc(1 << 20, 0x20)]));
      const reply = await oversized.next().then(
        (payload) => JSON.parse(payload),
        (error) => ({ reset: error.code ?? error.message }),
      );
      assert.ok(reply.reset || reply.error.code === 'bad_request', JSON.stringify(reply));
    } finally {
      oversized.destroy();
    }

    // A peer that half-closes without sending anything: closed quietly, with no reply.
    const silent = await Client.connect(port);
    try {
      silent.end();
      assert.equal(await silent.closed(), true);
    } finally {
      silent.destroy();
    }

    const took = await twentyFreshConnections();
    assert.ok(took < 3000, `${took} ms`);
  });
});
