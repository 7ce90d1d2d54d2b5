'use strict';
// Row 7c's second peer: a length-line server written by hand on `net`, without the SDK, that does what
// the SDK does with a request: `JSON.parse` the envelope, dispatch on `head.method` through a table of
// methods, call `echo`, `JSON.stringify` its result as the reply (an unknown method or a malformed
// envelope gets the protocol's error reply, docs/PROTOCOL.md section 2.3). `net_echo.js` is the floor.
//
//   node bench/peers/net_dispatch.js 127.0.0.1:PORT

const net = require('node:net');

const [host, port] = (process.argv[2] || '127.0.0.1:21250').split(':');

const methods = new Map([['echo', (data) => data]]);

const error = (code, message) => ({ error: { code, message } });

function dispatch(payload) {
  let envelope;
  try {
    envelope = JSON.parse(payload);
  } catch (e) {
    return error('bad_request', `not JSON: ${e.message}`);
  }
  const name = envelope?.head?.method;
  if (typeof name !== 'string') return error('bad_request', 'the envelope needs a string head.method');
  const method = methods.get(name);
  if (method === undefined) return error('method_not_found', `no method named '${name}'`);
  return method(envelope.data ?? null);
}

net
  .createServer((socket) => {
    socket.setNoDelay(true);
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 12) {
        const len = Number(buffered.toString('latin1', 0, 10));
        if (buffered.length < 12 + len) break;
        const payload = buffered.toString('utf8', 12, 12 + len);
        buffered = buffered.subarray(12 + len);
        const reply = JSON.stringify(dispatch(payload) ?? null);
        socket.write(`${String(Buffer.byteLength(reply)).padStart(10, ' ')}\r\n${reply}`);
      }
    });
    socket.on('error', () => socket.destroy());
  })
  .listen(Number(port), host);
