'use strict';
// Row 6's peer behind nginx: Node's `http` module, replying with the posted envelope's `data`.
//
//   node bench/peers/http_echo.js 127.0.0.1:PORT

const http = require('node:http');

const [host, port] = (process.argv[2] || '127.0.0.1:21246').split(':');

http
  .createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      let body;
      try {
        body = JSON.stringify(JSON.parse(Buffer.concat(chunks).toString('utf8')).data ?? null);
      } catch {
        res.writeHead(400).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
  })
  .listen(Number(port), host);
