'use strict';
// Pipelining negotiation through a served Node backend: the core answers `_pipeline`, then wraps every
// reply in `{"seq":S,"reply":R}`, R byte for byte the reply a plain connection gets.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const { Backend, MethodError } = require('..');
const { Client, frame } = require('./client.js');

const NEGOTIATION = JSON.stringify({ head: { method: '_pipeline' }, data: { version: 1, depth: 4 } });

/** Sends every payload in one write; the raw replies, one per payload, as text. */
async function replies(port, payloads) {
  const client = await Client.connect(port);
  try {
    client.write(Buffer.concat(payloads.map(frame)));
    const out = [];
    for (let i = 0; i < payloads.length; i++) out.push((await client.next()).toString('utf8'));
    return out;
  } finally {
    client.destroy();
  }
}

test('a negotiated connection gets every reply enveloped with its request number, as it completes', async () => {
  const backend = new Backend()
    .method('echo', (data) => data)
    .method('slow', async (data) => {
      await sleep(20);
      return { slow: data };
    })
    .method('refuse', (data) => {
      throw new MethodError('not_found', `no todo ${data}`);
    });
  const { port } = await backend.listen('127.0.0.1:0');
  try {
    const request = (method, data) => JSON.stringify({ head: { method }, data });
    const requests = [
      request('slow', 1),
      request('echo', { b: 1, a: [1, 2] }),
      request('refuse', 3),
      request('_ping', null),
      request('nope', null),
    ];
    const bare = await replies(port, requests);
    assert.equal(bare[3], '{"pong":true}');

    const sequenced = await replies(port, [NEGOTIATION, ...requests]);
    assert.equal(sequenced[0], '{"pipeline":1}');
    const seq = (reply) => Number(/^\{"seq":(\d+),/.exec(reply)[1]);
    assert.deepEqual(
      sequenced.slice(1).sort((x, y) => seq(x) - seq(y)),
      bare.map((reply, i) => `{"seq":${i + 1},"reply":${reply}}`),
    );
    // The slow first request does not hold up the replies behind it.
    assert.equal(sequenced.at(-1), `{"seq":1,"reply":${bare[0]}}`);
  } finally {
    await backend.close();
  }
});
