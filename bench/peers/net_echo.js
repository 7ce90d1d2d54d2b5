'use strict';
// Row 7's Node peer: a length-line echo server written by hand on `net`.
//
//   node bench/peers/net_echo.js 127.0.0.1:PORT

const net = require('node:net');

const [host, port] = (process.argv[2] || '127.0.0.1:21247').split(':');

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
        const reply = JSON.stringify(JSON.parse(payload).data ?? null);
        socket.write(`${String(Buffer.byteLength(reply)).padStart(10, ' ')}\r\n${reply}`);
      }
    });
    socket.on('error', () => socket.destroy());
  })
  .listen(Number(port), host);
