'use strict';
// The Node SDK contestant: `echo` replies with the request's `data`.
//
//   node bench/backends/echo.js 127.0.0.1:PORT

const { Backend } = require('../../sdk-node');

const backend = new Backend();
backend.method('echo', (data) => data);
backend.listen(process.argv[2] || '127.0.0.1:21244').catch((error) => {
  console.error(error);
  process.exit(1);
});
