'use strict';
// The shared length-line vectors (sdk-rust/tests/vectors): through the core's decoder as the package
// exposes it, and over TCP against a served backend.

const { test, describe, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { Backend, FrameError, decodeFrames } = require('..');
const { Client } = require('./client.js');

const VECTORS = path.join(__dirname, '..', '..', 'sdk-rust', 'tests', 'vectors');
const vectors = fs
  .readdirSync(VECTORS)
  .filter((name) => name.endsWith('.json'))
  .sort()
  .map((name) => ({ name, ...JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8')) }));

/** The decoder's outcome for `chunks`: the frames and the error kind, or null. */
function outcome(chunks, maxFrame) {
  try {
    return { frames: decodeFrames(chunks, maxFrame).map(String), error: null };
  } catch (error) {
    assert.ok(error instanceof FrameError, String(error));
    return { frames: error.frames.map(String), error: error.code };
  }
}

test('the vector directory is there', () => {
  assert.ok(vectors.length >= 20, `only ${vectors.length} vectors in ${VECTORS}`);
});

describe('decodeFrames (the core decoder)', () => {
  for (const vector of vectors) {
    test(`${vector.name}: ${vector.description}`, () => {
      const input = Buffer.from(vector.input, 'utf8');
      const expected = { frames: vector.frames, error: vector.error };
      assert.deepEqual(outcome(input, vector.max_frame), expected, 'in one read');
      const bytes = [...input].map((byte) => Buffer.from([byte]));
      assert.deepEqual(outcome(bytes, vector.max_frame), expected, 'one byte at a time');
      for (let at = 1; at < input.length; at += 1) {
        const split = [input.subarray(0, at), input.subarray(at)];
        assert.deepEqual(outcome(split, vector.max_frame), expected, `split at ${at}`);
      }
    });
  }
});

describe('a served backend reading the vectors over TCP', () => {
  // One backend per max_frame in use; every payload gets one reply, a bad stream one more, then EOF.
  const backends = new Map();
  async function portFor(maxFrame) {
    if (!backends.has(maxFrame)) {
      const backend = new Backend().method('echo', (data) => data);
      const listening = backend.listen('127.0.0.1:0', maxFrame === undefined ? {} : { maxFrame });
      backends.set(maxFrame, { backend, listening });
    }
    return (await backends.get(maxFrame).listening).port;
  }
  after(() => Promise.all([...backends.values()].map(({ backend }) => backend.close())));

  for (const vector of vectors) {
    test(vector.name, async () => {
      const client = await Client.connect(await portFor(vector.max_frame));
      try {
        client.write(Buffer.from(vector.input, 'utf8'));
        client.end();
        for (const payload of vector.frames) {
          const reply = JSON.parse(await client.next());
          // The payloads are not request envelopes, so each is answered with a bad_request.
          assert.equal(reply.error?.code, 'bad_request', `reply to ${JSON.stringify(payload)}`);
          assert.doesNotMatch(reply.error.message, /bad frame/);
        }
        if (vector.error !== null) {
          const reply = JSON.parse(await client.next());
          assert.equal(reply.error?.code, 'bad_request');
          assert.match(reply.error.message, /^bad frame/);
        }
        assert.equal(await client.closed(), true, 'the server closes the connection with nothing more to say');
      } finally {
        client.destroy();
      }
    });
  }
});

test('a good envelope framed with zero padding is served', async () => {
  const backend = new Backend().method('echo', (data) => data);
  const { port } = await backend.listen('127.0.0.1:0');
  const client = await Client.connect(port);
  try {
    const payload = Buffer.from(JSON.stringify({ head: { method: 'echo' }, data: 'Zoë ✓' }));
    client.write(Buffer.concat([Buffer.from(`${String(payload.length).padStart(10, '0')}\r\n`), payload]));
    assert.equal(JSON.parse(await client.next()), 'Zoë ✓');
  } finally {
    client.destroy();
    await backend.close();
  }
});
